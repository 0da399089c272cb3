// Security audit checks over berthd's real socket: hostile paths in requests (log paths through
// planted symlinks, mount sources linking into berth's own data, seccomp profile files that are
// secrets or FIFOs), oversized values in error messages, capped outputs. Host-network pods (no
// CNI); cgroup parent /berth-test-audit.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { lstat, mkdir, readFile, readdir, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { NamespaceMode } from "../src/gen/api.js";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { podConfig, sh } from "./sandbox-net.js";

const CGROUP_PARENT = "/berth-test-audit";

type GrpcErr = { code: number; details: string };
const refused = (code: number, re: RegExp) => (e: GrpcErr) => {
  assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
  assert.match(e.details, re);
  return true;
};

describe("security: hostile requests and paths", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let outside: string;
  let seq = 0;

  before(async () => {
    reg = await startRegistry();
    await pushImage(reg, "audit/busybox", { layers: [{ entries: await busyboxEntries(["sh", "echo", "sleep", "true", "cat", "head", "yes"]) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/audit/busybox:1`;
    d = await startBerthd();
    await d.cri.image.pullImage({ image: { image } });
    outside = path.join(d.dir, "outside");
    await mkdir(outside, { recursive: true });
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await removeCgroupParent(CGROUP_PARENT);
  });

  const newPod = async (name: string, logDirectory = "") => {
    const cfg = podConfig(name, {
      logDirectory,
      linux: { cgroupParent: CGROUP_PARENT, securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD } } },
    });
    return { podSandboxId: (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId, cfg };
  };

  const create = (pod: { podSandboxId: string; cfg: Record<string, unknown> }, over: Record<string, unknown>) =>
    d.cri.runtime.createContainer({
      podSandboxId: pod.podSandboxId,
      sandboxConfig: pod.cfg,
      config: { metadata: { name: `c${++seq}` }, image: { image }, command: ["sleep", "300"], ...over },
    }).then((r) => r.containerId);

  test("log_path: a symlink planted in the pod's log directory is refused, its target untouched", async () => {
    const logDir = path.join(d.dir, "logs", "planted");
    await mkdir(logDir, { recursive: true });
    const pod = await newPod("audit-log", logDir);
    // The final file a link to a host file; a folder a link to a host folder.
    const victim = path.join(outside, "victim");
    await writeFile(victim, "precious\n");
    await symlink(victim, path.join(logDir, "file.log"));
    await symlink(outside, path.join(logDir, "sub"));
    await assert.rejects(create(pod, { logPath: "file.log" }), refused(status.INVALID_ARGUMENT, /symlink/));
    await assert.rejects(create(pod, { logPath: "sub/0.log" }), refused(status.INVALID_ARGUMENT, /symlink/));
    assert.equal(await readFile(victim, "utf8"), "precious\n");
    assert.deepEqual((await readdir(outside)).sort(), ["victim"], "nothing created outside the log directory");
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
    // A fresh folder and file below the log directory still work.
    const id = await create(pod, { logPath: "ctr/0.log", command: ["sh", "-c", "echo hi; sleep 300"] });
    assert.ok((await stat(path.join(logDir, "ctr", "0.log"))).isFile());
    // ReopenContainerLog: conmon writes <file>.tmp with O_TRUNC; a link planted there must not truncate the victim.
    await d.cri.runtime.startContainer({ containerId: id });
    await symlink(victim, path.join(logDir, "ctr", "0.log.tmp"));
    await d.cri.runtime.reopenContainerLog({ containerId: id });
    assert.equal(await readFile(victim, "utf8"), "precious\n");
    assert.ok((await lstat(path.join(logDir, "ctr", "0.log"))).isFile(), "the reopened log is a regular file");
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId: id });
  });

  test("mount host_path: a symlink leading into berth's root or state is refused, nothing created there", async () => {
    const pod = await newPod("audit-mount");
    await symlink(d.root, path.join(outside, "to-root"));
    await symlink(d.layout.bundles, path.join(outside, "to-state"));
    const rootBefore = await readdir(d.root, { recursive: true });
    for (const hostPath of [path.join(outside, "to-root"), path.join(outside, "to-root", "image"), path.join(outside, "to-root", "new-dir"), path.join(outside, "to-state")]) {
      await assert.rejects(create(pod, { mounts: [{ containerPath: "/steal", hostPath }] }), refused(status.INVALID_ARGUMENT, /inside berth's own data/), hostPath);
    }
    assert.deepEqual(await readdir(d.root, { recursive: true }), rootBefore, "no mount point created under berth's root");
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
    // A plain host folder still mounts.
    await mkdir(path.join(outside, "data"), { recursive: true });
    const id = await create(pod, { mounts: [{ containerPath: "/data", hostPath: path.join(outside, "data") }] });
    await d.cri.runtime.removeContainer({ containerId: id });
  });

  test("seccomp Localhost profile: a secret file's bytes never come back, a FIFO does not hang berthd", async () => {
    const pod = await newPod("audit-seccomp");
    const secret = path.join(outside, "shadow");
    await writeFile(secret, "root:$6$SECRETHASH:19000:0:99999:7:::\n", { mode: 0o600 });
    for (const sc of [{ seccompProfilePath: `localhost/${secret}` }, { seccomp: { profileType: 2, localhostRef: secret } }]) {
      await assert.rejects(create(pod, { linux: { securityContext: sc } }), (e: GrpcErr) => {
        assert.equal(e.code, status.INVALID_ARGUMENT, e.details);
        assert.doesNotMatch(e.details, /SECRET|root:/, "the file's content is not in the status");
        return true;
      });
    }
    assert.doesNotMatch(d.logs(), /SECRETHASH/, "nor in berthd's log");
    const fifo = path.join(outside, "profile.fifo");
    await sh("mkfifo", [fifo]);
    const t0 = Date.now();
    await assert.rejects(create(pod, { linux: { securityContext: { seccompProfilePath: `localhost/${fifo}` } } }), refused(status.INVALID_ARGUMENT, /not a regular file/));
    assert.ok(Date.now() - t0 < 10_000, "answered without waiting for a writer");
    assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
  });

  test("a 4 MiB field quoted by a check is capped in the status and in berthd's log", async () => {
    const big = "x".repeat(4 << 20);
    const cases: Array<[string, () => Promise<unknown>]> = [
      ["hostname", () => d.cri.runtime.runPodSandbox({ config: podConfig("audit-big", { hostname: `a${big}` }) })],
      ["sysctl", () => d.cri.runtime.runPodSandbox({ config: podConfig("audit-big", { linux: { sysctls: { [`net.${big}/`]: "1" } } }) })],
      ["sysctl value", () => d.cri.runtime.runPodSandbox({ config: podConfig("audit-big", { linux: { sysctls: { "net.ipv4.ping_group_range": big } } }) })],
      ["cgroup parent", () => d.cri.runtime.runPodSandbox({ config: podConfig("audit-big", { linux: { cgroupParent: big } }) })],
      ["image", () => d.cri.image.pullImage({ image: { image: `${reg.host}/${"a".repeat(4 << 20)}` } })],
    ];
    for (const [what, call] of cases) {
      await assert.rejects(call(), (e: GrpcErr) => {
        assert.equal(e.code, status.INVALID_ARGUMENT, `${what}: ${e.details.slice(0, 200)}`);
        assert.ok(e.details.length <= 5000, `${what}: status message is ${e.details.length} characters`);
        return true;
      });
    }
    const longest = Math.max(...d.logs().split("\n").map((l) => l.length));
    assert.ok(longest < 16_384, `berthd logged a ${longest}-character line`);
  });

  test("ExecSync output is capped to fit a 16 MiB response, read back with bounded memory", async () => {
    const pod = await newPod("audit-exec");
    const id = await create(pod, {});
    await d.cri.runtime.startContainer({ containerId: id });
    const r = await d.cri.runtime.execSync({ containerId: id, cmd: ["sh", "-c", "head -c 20000000 /dev/zero; echo done >&2"], timeout: 60n });
    assert.equal(r.stdout.length, 16 * 1024 * 1024 - 4096);
    assert.equal(r.stderr.length, 0, "stdout used the whole budget");
    const both = await d.cri.runtime.execSync({ containerId: id, cmd: ["sh", "-c", "head -c 1000 /dev/zero; echo done >&2"], timeout: 60n });
    assert.equal(both.stdout.length, 1000);
    assert.equal(both.stderr.toString(), "done\n");
    await d.cri.runtime.stopContainer({ containerId: id, timeout: 0n });
    await d.cri.runtime.removeContainer({ containerId: id });
  });
});
