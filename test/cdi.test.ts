// CDI devices end to end through berthd's CRI socket with real runc: spec files the test writes
// (JSON and YAML) into two spec dirs configured as [cdi] spec_dirs; a vendor device backed by
// device nodes the test mknods (one with /dev/null's numbers, one with an unused major), a mount,
// env and a createRuntime hook. Pods on a CNI bridge bi1, 10.203.1.0/24.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { execa } from "execa";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bi1";
const SUBNET = "10.203.1.0/24";
const CGROUP_PARENT = "/berth-test-cdi";
const UNUSED_MAJOR = 240; // "local/experimental use" in the kernel's device list: no driver claims it

type GrpcErr = { code: number; details: string };

describe("CDI devices", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let low: string;
  let high: string;
  let nodes: string;
  let lib: string;
  let hookOut: string;
  let pod: { podSandboxId: string; cfg: Record<string, unknown> };
  let seq = 0;

  const vendorSpec = (env: string) => ({
    cdiVersion: "0.6.0",
    kind: "vendor.test/dev",
    containerEdits: { env: ["VENDOR_COMMON=1"] },
    devices: [
      {
        name: "vnull",
        containerEdits: {
          env: [`VENDOR_DEVICE=${env}`],
          deviceNodes: [
            { path: "/dev/vendor-null", hostPath: path.join(nodes, "vnull"), permissions: "rw" },
            { path: "/dev/vendor-x", hostPath: path.join(nodes, "vx"), permissions: "r" },
          ],
          mounts: [{ hostPath: lib, containerPath: "/opt/vendor", options: ["ro", "nosuid", "nodev"] }],
          hooks: [{ hookName: "createRuntime", path: "/bin/sh", args: ["sh", "-c", `cat > ${hookOut}`] }],
          additionalGids: [4242],
        },
      },
    ],
  });

  const createRunning = async (over: Record<string, unknown>) => {
    const name = `c${++seq}`;
    const { containerId } = await d.cri.runtime.createContainer({
      podSandboxId: pod.podSandboxId,
      sandboxConfig: pod.cfg,
      config: { metadata: { name }, image: { image }, command: ["sleep", "300"], ...over },
    });
    await d.cri.runtime.startContainer({ containerId });
    return containerId;
  };
  const exec = async (containerId: string, script: string) => {
    const r = await d.cri.runtime.execSync({ containerId, cmd: ["sh", "-c", script], timeout: 20n });
    return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
  };
  const remove = async (containerId: string) => {
    await d.cri.runtime.stopContainer({ containerId, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId });
  };

  before(async () => {
    reg = await startRegistry();
    await pushImage(reg, "cdi/busybox", { layers: [{ entries: await busyboxEntries(["sh", "cat", "echo", "sleep", "test", "env", "grep", "ls"]) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/cdi/busybox:1`;
    d = await startBerthd({ config: "" });
    low = path.join(d.dir, "cdi-etc");
    high = path.join(d.dir, "cdi-run");
    nodes = path.join(d.dir, "nodes");
    lib = path.join(d.dir, "vendor-lib");
    hookOut = path.join(d.dir, "hook-state.json");
    for (const p of [low, high, nodes, lib]) await mkdir(p, { recursive: true });
    await execa("mknod", ["-m", "0666", path.join(nodes, "vnull"), "c", "1", "3"]);
    await execa("mknod", ["-m", "0640", path.join(nodes, "vx"), "c", String(UNUSED_MAJOR), "7"]);
    await writeFile(path.join(lib, "lib.txt"), "vendor library\n");
    await writeFile(path.join(low, "vendor.json"), JSON.stringify(vendorSpec("from-etc")));
    // berthd restarts on the same dirs with [cdi] pointing at them (the dirs live under its temp dir).
    await d.stop();
    await writeFile(d.configFile, (await readFile(d.configFile, "utf8")) + `[cdi]\nspec_dirs = ["${low}", "${high}"]\n`);
    d = await d.restart();
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
    const cfg = podConfig("cdi", { linux: { cgroupParent: CGROUP_PARENT } });
    pod = { podSandboxId: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  });
  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  test("by CDI_devices: the container sees the device nodes (with cgroup rules), the mount, the env; the hook ran", async () => {
    await rm(hookOut, { force: true });
    const id = await createRunning({ CDIDevices: [{ name: "vendor.test/dev=vnull" }] });
    const hook = JSON.parse(await readFile(hookOut, "utf8")) as { id: string };
    assert.equal(hook.id, id, "the createRuntime hook got the container's state on stdin");
    const r = await exec(id, "test -c /dev/vendor-null && test -c /dev/vendor-x && echo ok > /dev/vendor-null && cat /opt/vendor/lib.txt && env | grep ^VENDOR_ | sort && ls -ln /dev/vendor-x");
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^vendor library\nVENDOR_COMMON=1\nVENDOR_DEVICE=from-etc\n/);
    assert.match(r.out, new RegExp(`^crw-r----- .* ${UNUSED_MAJOR}, +7 .*/dev/vendor-x$`, "m"), "type, numbers and mode came from the host node");
    assert.match((await exec(id, "grep ^Groups: /proc/self/status")).out, /\b4242\b/, "additionalGids reach the process");
    const st = (await d.cri.runtime.containerStatus({ containerId: id })).status!;
    assert.ok(st.user!.linux!.supplementalGroups.includes(4242n), "and ContainerStatus.user reports them");
    const ro = await exec(id, "echo x > /opt/vendor/new");
    assert.notEqual(ro.code, 0, "the ro option of the CDI mount holds");
    const info = JSON.parse((await d.cri.runtime.containerStatus({ containerId: id, verbose: true })).info.info!);
    const cgroup = info.runtimeSpec.linux.cgroupsPath as string;
    // cgroup v1 lists the device rules (this host); v2 compiles them into an eBPF program with no listing.
    if (await stat("/sys/fs/cgroup/devices").then(() => true, () => false)) {
      const rules = await readFile(path.join("/sys/fs/cgroup/devices", cgroup, "devices.list"), "utf8");
      assert.match(rules, new RegExp(`^c ${UNUSED_MAJOR}:7 r$`, "m"), rules);
    } else {
      console.log("# cgroup v2: the device rule is checked in the spec only");
    }
    assert.ok((info.runtimeSpec.linux.resources.devices as Array<Record<string, unknown>>).some((r) => r.allow === true && r.major === UNUSED_MAJOR && r.minor === 7 && r.access === "r"));
    await remove(id);
  });

  test("by a cdi.k8s.io/ annotation (a comma list), and a YAML spec in the later dir overriding the earlier one", async () => {
    await writeFile(path.join(high, "override.yaml"), `# the later dir wins for vendor.test/dev=vnull
cdiVersion: "0.6.0"
kind: vendor.test/dev
devices:
- name: vnull
  containerEdits:
    env: [VENDOR_DEVICE=from-run]
    deviceNodes:
    - path: /dev/vendor-null
      hostPath: ${path.join(nodes, "vnull")}
- name: second
  containerEdits:
    env:
    - SECOND=yes
`);
    const id = await createRunning({ annotations: { "cdi.k8s.io/test-claim": "vendor.test/dev=vnull, vendor.test/dev=second" } });
    const r = await exec(id, "test -c /dev/vendor-null && echo ok > /dev/vendor-null && env | grep -E '^(VENDOR_|SECOND)' | sort; test -e /opt/vendor/lib.txt || echo no-mount");
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, "SECOND=yes\nVENDOR_DEVICE=from-run\nno-mount\n");
    await remove(id);
    await rm(path.join(high, "override.yaml"));
  });

  test("an unknown name fails CreateContainer with InvalidArgument naming it and the dirs; nothing is left", async () => {
    const before = (await d.cri.runtime.listContainers({})).containers.length;
    await assert.rejects(createRunning({ CDIDevices: [{ name: "vendor.test/dev=nope" }] }), (e: GrpcErr) => {
      assert.equal(e.code, status.INVALID_ARGUMENT, e.details);
      assert.ok(e.details.includes("vendor.test/dev=nope") && e.details.includes(low) && e.details.includes(high), e.details);
      return true;
    });
    await assert.rejects(createRunning({ annotations: { "cdi.k8s.io/x": "not-qualified" } }), (e: GrpcErr) => e.code === status.INVALID_ARGUMENT && e.details.includes("not-qualified"));
    assert.equal((await d.cri.runtime.listContainers({})).containers.length, before);
    // The failed names are free again (no half-created container holds them).
    const id = await createRunning({ CDIDevices: [{ name: "vendor.test/dev=vnull" }] });
    await remove(id);
  });

  test("spec files changed while berthd runs are picked up: edited, added, broken (skipped with a reason)", async () => {
    await writeFile(path.join(low, "vendor.json"), JSON.stringify(vendorSpec("edited")));
    const a = await createRunning({ CDIDevices: [{ name: "vendor.test/dev=vnull" }] });
    assert.match((await exec(a, "echo $VENDOR_DEVICE")).out, /^edited$/m);
    await remove(a);
    await writeFile(path.join(high, "new.yml"), "cdiVersion: 0.5.0\nkind: other.test/thing\ndevices:\n  - name: t1\n    containerEdits:\n      env: [\"THING='one'\"]\n");
    await writeFile(path.join(high, "bad.json"), JSON.stringify({ cdiVersion: "0.6.0", kind: "bad", devices: [{ name: "x" }] }));
    const b = await createRunning({ CDIDevices: [{ name: "other.test/thing=t1" }] });
    assert.equal((await exec(b, "echo $THING")).out, "'one'\n");
    await remove(b);
    await waitFor("the skipped-file log line", async () => d.logs().split("\n").some((l) => l.includes("CDI spec file skipped") && l.includes("bad.json") && l.includes('kind \\"bad\\"')), 5_000);
    await rm(path.join(high, "new.yml"));
    await assert.rejects(createRunning({ CDIDevices: [{ name: "other.test/thing=t1" }] }), (e: GrpcErr) => e.code === status.INVALID_ARGUMENT);
  });
});
