// The Kubernetes 1.30-1.36 CRI contract through berthd's socket with real runc: idempotent
// Stop/Remove, recursive read-only mounts, SupplementalGroupsPolicy, stop signals, ambient
// capabilities, AppArmor/SELinux on a host without them, and what a create request set coming
// back unchanged. CNI bridge bcon0, 10.202.0.0/16.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, Mount, MountPropagation, SecurityProfile_ProfileType, Signal, SupplementalGroupsPolicy } from "../src/gen/api.js";
import { kernelAtLeast } from "../src/runtime/handler-features.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { GROUP, PASSWD } from "./container-fixtures.js";
import { deleteBridge, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bcon0";
const SUBNET = "10.202.0.0/16";
const CGROUP_PARENT = "/berth-test-contract";
const APPLETS = ["sh", "cat", "echo", "sleep", "id", "true", "touch", "grep", "mkdir"];

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  };
}

type Pod = { podSandboxId: string; cfg: Record<string, unknown> };

describe("the 1.30-1.36 CRI contract through berthd's socket", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let userImage: string;
  let usr2Image: string;
  let scratch: string;
  let seq = 0;

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(APPLETS);
    const etc = { entries: [{ path: "etc/passwd", content: PASSWD }, { path: "etc/group", content: GROUP }, { path: "home/default-user/", type: "dir" as const }, { path: "mnt/", type: "dir" as const }] };
    await pushImage(reg, "contract/busybox", { layers: [{ entries: base }, etc], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    // Like critest's test-image-predefined-group: default-user (1000) is in group-defined-in-image (50000).
    await pushImage(reg, "contract/predefined-group", { layers: [{ entries: base }, etc], config: { Cmd: ["sh"], Env: ["PATH=/bin"], User: "1000" } }, ["1"]);
    await pushImage(reg, "contract/stop-usr2", { layers: [{ entries: base }, etc], config: { Cmd: ["sh"], Env: ["PATH=/bin"], StopSignal: "SIGUSR2" } }, ["1"]);
    image = `${reg.host}/contract/busybox:1`;
    userImage = `${reg.host}/contract/predefined-group:1`;
    usr2Image = `${reg.host}/contract/stop-usr2:1`;
    d = await startBerthd();
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    for (const i of [image, userImage, usr2Image]) await d.cri.image.pullImage({ image: { image: i } });
    scratch = await mkdtemp(path.join(tmpdir(), "berth-contract-"));
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  const newPod = async (name: string, extra: Record<string, unknown> = {}): Promise<Pod> => {
    const cfg = podConfig(name, { ...extra, linux: { cgroupParent: CGROUP_PARENT, ...(extra.linux as object | undefined) } });
    return { podSandboxId: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  };

  const create = async (pod: Pod, over: Record<string, unknown>) => {
    const name = `c${++seq}`;
    const r = await d.cri.runtime.createContainer({ podSandboxId: pod.podSandboxId, sandboxConfig: pod.cfg, config: { metadata: { name }, image: { image }, ...over } });
    return r.containerId;
  };

  const run = async (pod: Pod, over: Record<string, unknown>) => {
    const id = await create(pod, over);
    await d.cri.runtime.startContainer({ containerId: id });
    return id;
  };

  const statusOf = async (id: string) => (await d.cri.runtime.containerStatus({ containerId: id })).status!;

  const exited = (id: string) =>
    waitFor(`container ${id} to exit`, async () => {
      const s = await statusOf(id);
      return s.state === ContainerState.CONTAINER_EXITED ? s : undefined;
    }, 20_000);

  const exec = async (id: string, cmd: string[]) => {
    const r = await d.cri.runtime.execSync({ containerId: id, cmd, timeout: 10n });
    return { code: r.exitCode, out: Buffer.from(r.stdout).toString(), err: Buffer.from(r.stderr).toString() };
  };

  const logText = async (id: string) => (await readFile((await statusOf(id)).logPath, "utf8")).split("\n").map((l) => l.split(" ").slice(3).join(" ")).join("\n");

  test("Status reports recursive read-only mounts for runc on this kernel and SupplementalGroupsPolicy", async () => {
    const s = await d.cri.runtime.status({ verbose: false });
    // The default handler is listed under "" too: what critest (and a pod naming no handler) looks up.
    assert.deepEqual(s.runtimeHandlers.map((h) => h.name), ["", "runc"]);
    // runc 1.1.5 lists "rro" in `runc features`; mount_setattr needs Linux 5.12.
    for (const h of s.runtimeHandlers) assert.equal(h.features?.recursiveReadOnlyMounts, kernelAtLeast(release(), 5, 12), `handler "${h.name}"`);
    assert.equal(s.features?.supplementalGroupsPolicy, true);
  });

  test("Stop and Remove of unknown ids succeed; status calls of them stay NotFound", async () => {
    const ghost = randomUUID();
    await d.cri.runtime.stopContainer({ containerId: ghost, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId: ghost });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: ghost });
    await d.cri.runtime.removePodSandbox({ podSandboxId: ghost });
    await assert.rejects(d.cri.runtime.containerStatus({ containerId: ghost }), rpcError(status.NOT_FOUND, /not found/));
    await assert.rejects(d.cri.runtime.podSandboxStatus({ podSandboxId: ghost }), rpcError(status.NOT_FOUND, /not found/));
    // A container stopped and removed twice: the second calls are no-ops too.
    const pod = await newPod("idem");
    const id = await run(pod, { command: ["sleep", "1000"] });
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId: id });
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId: id });
    await assert.rejects(d.cri.runtime.containerStatus({ containerId: id }), rpcError(status.NOT_FOUND, /not found/));
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.podSandboxId });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.podSandboxId });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: pod.podSandboxId });
    await d.cri.runtime.removePodSandbox({ podSandboxId: pod.podSandboxId });
  });

  describe("recursive read-only mounts", () => {
    let host: string;
    before(async () => {
      host = path.join(scratch, "rro");
      await mkdir(path.join(host, "tmpfs"), { recursive: true });
      const m = await sh("mount", ["-t", "tmpfs", "-o", "size=1m", "berth-contract", path.join(host, "tmpfs")]);
      assert.equal(m.code, 0, m.stderr);
    });
    after(async () => {
      if (host) await sh("umount", ["-l", path.join(host, "tmpfs")]);
    });

    test("an rro bind mount's tmpfs submount is read-only inside; a plain read-only one's is not", async () => {
      const pod = await newPod("rro");
      const mount = (rro: boolean) => [{ containerPath: "/mnt", hostPath: host, readonly: true, recursiveReadOnly: rro }];
      const rro = await run(pod, { command: ["sleep", "1000"], mounts: mount(true) });
      const plain = await run(pod, { command: ["sleep", "1000"], mounts: mount(false) });
      const rroTouch = await exec(rro, ["touch", "/mnt/tmpfs/f"]);
      assert.notEqual(rroTouch.code, 0);
      assert.match(rroTouch.err, /Read-only file system/);
      assert.match((await exec(rro, ["touch", "/mnt/top"])).err, /Read-only file system/);
      assert.deepEqual(await exec(plain, ["touch", "/mnt/tmpfs/f"]), { code: 0, out: "", err: "" });
      assert.match((await exec(plain, ["touch", "/mnt/top"])).err, /Read-only file system/);
      const verbose = JSON.parse((await d.cri.runtime.containerStatus({ containerId: rro, verbose: true })).info.info!);
      assert.deepEqual(verbose.runtimeSpec.mounts.find((m: { destination: string }) => m.destination === "/mnt").options, ["rbind", "rprivate", "ro", "rro"]);
      assert.equal((await statusOf(rro)).mounts[0]!.recursiveReadOnly, true);
    });

    test("rro without readonly, or with propagation other than private, is InvalidArgument", async () => {
      const pod = await newPod("rro-bad");
      const base = { containerPath: "/mnt", hostPath: host, readonly: true, recursiveReadOnly: true, selinuxRelabel: true };
      await assert.rejects(create(pod, { command: ["true"], mounts: [{ ...base, readonly: false }] }),
        rpcError(status.INVALID_ARGUMENT, /mount \/mnt: recursive_read_only needs readonly: true as well/));
      await assert.rejects(create(pod, { command: ["true"], mounts: [{ ...base, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }] }),
        rpcError(status.INVALID_ARGUMENT, /recursive_read_only needs propagation PROPAGATION_PRIVATE, not PROPAGATION_HOST_TO_CONTAINER/));
      await assert.rejects(create(pod, { command: ["true"], mounts: [{ ...base, propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }] }),
        rpcError(status.INVALID_ARGUMENT, /not PROPAGATION_BIDIRECTIONAL/));
      assert.deepEqual((await d.cri.runtime.listContainers({ filter: { podSandboxId: pod.podSandboxId } })).containers, []);
    });
  });

  describe("SupplementalGroupsPolicy", () => {
    const groupsRun = async (pod: Pod, policy: SupplementalGroupsPolicy) => {
      const id = await run(pod, {
        image: { image: userImage },
        command: ["sh", "-c", "id -G; sleep 1000"],
        linux: { securityContext: { runAsUser: { value: 1000n }, supplementalGroups: [1234n], supplementalGroupsPolicy: policy } },
      });
      await waitFor("id -G in the log", async () => (await logText(id)).trim() !== "");
      return id;
    };
    const sorted = (g: bigint[]) => [...g].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

    test("Merge adds the image's /etc/group groups of the user; Strict does not; ContainerStatus.user says what the process holds", async () => {
      const pod = await newPod("groups");
      const merge = await groupsRun(pod, SupplementalGroupsPolicy.Merge);
      const strict = await groupsRun(pod, SupplementalGroupsPolicy.Strict);
      assert.equal((await logText(merge)).trim(), "1000 1234 50000");
      assert.equal((await logText(strict)).trim(), "1000 1234");
      assert.equal((await exec(merge, ["id", "-G"])).out, "1000 1234 50000\n");
      assert.equal((await exec(strict, ["id", "-G"])).out, "1000 1234\n");
      const user = async (id: string) => {
        const u = (await statusOf(id)).user!.linux!;
        return { uid: u.uid, gid: u.gid, groups: sorted(u.supplementalGroups) };
      };
      assert.deepEqual(await user(merge), { uid: 1000n, gid: 1000n, groups: [1000n, 1234n, 50000n] });
      assert.deepEqual(await user(strict), { uid: 1000n, gid: 1000n, groups: [1000n, 1234n] });
      // Once the process is gone, the status falls back to what the spec gave it: the same ids.
      await d.cri.runtime.stopContainer({ containerId: strict, timeout: 0n });
      assert.deepEqual(await user(strict), { uid: 1000n, gid: 1000n, groups: [1000n, 1234n] });
    });
  });

  describe("stop signals", () => {
    const trapping = (signal: string) => ["sh", "-c", `trap 'echo got-${signal}; exit 7' ${signal}; echo ready; while true; do sleep 1; done`];
    const ready = (id: string) => waitFor(`container ${id} ready`, async () => (await logText(id)).includes("ready"));

    test("ContainerConfig.stop_signal reaches the trap and is reported; it overrides the image's StopSignal", async () => {
      const pod = await newPod("stopsig");
      const id = await run(pod, { image: { image: usr2Image }, command: trapping("USR1"), stopSignal: Signal.SIGUSR1 });
      assert.equal((await statusOf(id)).stopSignal, Signal.SIGUSR1);
      await ready(id);
      await d.cri.runtime.stopContainer({ containerId: id, timeout: 20n });
      const s = await exited(id);
      assert.equal(s.exitCode, 7);
      assert.match(await logText(id), /got-USR1/);
      assert.equal(s.stopSignal, Signal.SIGUSR1);
    });

    test("the image's StopSignal without a config one; SIGTERM without either", async () => {
      const pod = await newPod("stopsig-image");
      const fromImage = await run(pod, { image: { image: usr2Image }, command: trapping("USR2") });
      const plain = await run(pod, { command: ["sleep", "1000"] });
      assert.equal((await statusOf(fromImage)).stopSignal, Signal.SIGUSR2);
      assert.equal((await statusOf(plain)).stopSignal, Signal.SIGTERM);
      await ready(fromImage);
      await d.cri.runtime.stopContainer({ containerId: fromImage, timeout: 20n });
      assert.equal((await exited(fromImage)).exitCode, 7);
      assert.match(await logText(fromImage), /got-USR2/);
    });
  });

  test("add_ambient_capabilities reach CapAmb (and CapInh, CapEff) of a non-root process", async () => {
    const pod = await newPod("ambient");
    const sc = (ambient: string[]) => ({ runAsUser: { value: 1000n }, capabilities: { addAmbientCapabilities: ambient } });
    const withAmb = await run(pod, { command: ["cat", "/proc/self/status"], linux: { securityContext: sc(["NET_BIND_SERVICE"]) } });
    const without = await run(pod, { command: ["cat", "/proc/self/status"], linux: { securityContext: sc([]) } });
    await exited(withAmb);
    await exited(without);
    const caps = async (id: string) => Object.fromEntries([...(await logText(id)).matchAll(/^(Cap\w+):\s+([0-9a-f]+)$/gm)].map((m) => [m[1], m[2]]));
    const bit10 = "0000000000000400"; // CAP_NET_BIND_SERVICE
    const a = await caps(withAmb);
    assert.deepEqual([a.CapAmb, a.CapInh, a.CapEff], [bit10, bit10, bit10]);
    const b = await caps(without);
    assert.deepEqual([b.CapAmb, b.CapInh, b.CapEff], ["0000000000000000", "0000000000000000", "0000000000000000"]);
  });

  test("AppArmor and SELinux on a host without them: Unconfined passes, RuntimeDefault is FailedPrecondition, SELinux options are ignored", async () => {
    const apparmorOn = (await readFile("/sys/module/apparmor/parameters/enabled", "utf8").catch(() => "N")).trim() === "Y";
    const selinuxOn = await readFile("/sys/fs/selinux/enforce", "utf8").then(() => true, () => false);
    if (apparmorOn || selinuxOn) return assert.fail("this test expects a host without AppArmor and SELinux");
    const pod = await newPod("lsm", { linux: { securityContext: { selinuxOptions: { user: "system_u", role: "system_r", type: "container_t", level: "s0:c1,c2" } } } });
    const unconfined = await run(pod, { command: ["true"], linux: { securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Unconfined }, selinuxOptions: { type: "container_t", level: "s0:c1,c2" } } } });
    assert.equal((await exited(unconfined)).exitCode, 0);
    await assert.rejects(create(pod, { command: ["true"], linux: { securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } } }),
      rpcError(status.FAILED_PRECONDITION, /AppArmor RuntimeDefault requested but AppArmor is not enabled on this host/));
    await assert.rejects(create(pod, { command: ["true"], linux: { securityContext: { apparmorProfile: "runtime/default" } } }),
      rpcError(status.FAILED_PRECONDITION, /AppArmor RuntimeDefault/));
    await assert.rejects(create(pod, { command: ["true"], linux: { securityContext: { apparmorProfile: "localhost/mine" } } }),
      rpcError(status.FAILED_PRECONDITION, /Localhost profile "mine"/));
  });

  test("what a create request set comes back unchanged from ContainerStatus, ListContainers, PodSandboxStatus and ListPodSandbox", async () => {
    const logDir = path.join(scratch, "logs");
    await mkdir(logDir, { recursive: true });
    const podLabels = { app: "keep", "example.com/tier": "web" };
    const podAnnotations = { "kubernetes.io/config.source": "api", note: "line1\nline2" };
    const cfg = podConfig("keep", { linux: { cgroupParent: CGROUP_PARENT }, logDirectory: logDir, labels: podLabels, annotations: podAnnotations });
    const podId = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    const podMeta = cfg.metadata as { name: string; namespace: string; uid: string; attempt: number };
    const ps = (await d.cri.runtime.podSandboxStatus({ podSandboxId: podId })).status!;
    assert.deepEqual([ps.metadata, ps.labels, ps.annotations], [podMeta, podLabels, podAnnotations]);
    const pl = (await d.cri.runtime.listPodSandbox({ filter: { id: podId } })).items;
    assert.equal(pl.length, 1);
    assert.deepEqual([pl[0]!.metadata, pl[0]!.labels, pl[0]!.annotations], [podMeta, podLabels, podAnnotations]);

    const dataDir = path.join(scratch, "data");
    await mkdir(dataDir, { recursive: true });
    const mounts = [
      Mount.fromPartial({ containerPath: "/data", hostPath: dataDir, readonly: true, selinuxRelabel: true, propagation: MountPropagation.PROPAGATION_PRIVATE }),
      Mount.fromPartial({ containerPath: "/scratch", hostPath: dataDir }),
    ];
    const metadata = { name: "keeper", attempt: 3 };
    const labels = { "io.kubernetes.container.name": "keeper", x: "" };
    const annotations = { "io.kubernetes.container.hash": "abc123", "with=equals": "a=b" };
    const imageSpec = { image, annotations: { "image.note": "kept" }, userSpecifiedImage: "alias/busybox:1", runtimeHandler: "", imageRef: "" };
    const resources = { cpuShares: 512n, cpuPeriod: 100000n, cpuQuota: 50000n, memoryLimitInBytes: 64n * 1024n * 1024n, oomScoreAdj: 500n, cpusetCpus: "0", cpusetMems: "" };
    const id = (await d.cri.runtime.createContainer({
      podSandboxId: podId, sandboxConfig: cfg,
      config: { metadata, image: imageSpec, command: ["sleep", "1000"], labels, annotations, logPath: "keeper/3.log", mounts, linux: { resources } },
    })).containerId;
    await d.cri.runtime.startContainer({ containerId: id });

    const s = await statusOf(id);
    assert.deepEqual(s.metadata, metadata);
    assert.deepEqual(s.labels, labels);
    assert.deepEqual(s.annotations, annotations);
    assert.deepEqual(s.image!.annotations, imageSpec.annotations);
    assert.equal(s.image!.userSpecifiedImage, imageSpec.userSpecifiedImage);
    assert.equal(s.image!.image, image);
    assert.equal(s.logPath, path.join(logDir, "keeper/3.log"));
    assert.deepEqual(s.mounts, mounts);
    for (const [k, v] of Object.entries(resources)) assert.equal((s.resources!.linux as unknown as Record<string, unknown>)[k], v, `resources.linux.${k}`);

    const listed = (await d.cri.runtime.listContainers({ filter: { id } })).containers;
    assert.equal(listed.length, 1);
    const c = listed[0]!;
    assert.deepEqual([c.podSandboxId, c.metadata, c.labels, c.annotations], [podId, metadata, labels, annotations]);
    assert.deepEqual(c.image!.annotations, imageSpec.annotations);
    assert.equal(c.image!.userSpecifiedImage, imageSpec.userSpecifiedImage);
  });
});
