// Pods with their own user namespace (KEP-127) through berthd's CRI socket, with real runc:
// the namespace berth pins and every container joins, idmapped rootfs layers, the owner of
// what the pod's root creates on the host, sysctls inside namespaces the user namespace owns,
// and the modes berth refuses. Network: bridge bu1, 10.208.1.0/24; cgroups under /berth-test-userns.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, readlink, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ContainerState, NamespaceMode } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, mountsUnder, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bu1";
const SUBNET = "10.208.1.0/24";
const CGROUP_PARENT = "/berth-test-userns";
const HOST_ID = 1_300_000;
const LENGTH = 65536;
const MAPPING = [{ containerId: 0, hostId: HOST_ID, length: LENGTH }];

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  };
}

const usernsPod = (name: string, extra: Record<string, unknown> = {}, userns: Record<string, unknown> = { mode: NamespaceMode.POD, uids: MAPPING, gids: MAPPING }) =>
  podConfig(name, {
    ...extra,
    linux: {
      cgroupParent: CGROUP_PARENT,
      ...(extra.linux as object | undefined),
      securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD, usernsOptions: userns } },
    },
  });

describe("pods with a user namespace (userns_options.mode POD)", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let seq = 0;

  before(async () => {
    reg = await startRegistry();
    const base = await busyboxEntries(["sh", "cat", "echo", "id", "touch", "stat", "readlink", "sleep", "true", "ls"]);
    await pushImage(reg, "userns/busybox", { layers: [{ entries: base }, { entries: [{ path: "etc/owned-by-root", content: "r\n" }] }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    await pushImage(reg, "userns/pause", { layers: [{ entries: base }], config: { Entrypoint: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/userns/busybox:1`;
    // Every dir on the way to berth's root and state must be searchable by the pods' mapped roots.
    const dir = await mkdtemp(path.join(tmpdir(), "berth-userns-"));
    await chmod(dir, 0o711);
    d = await startBerthd({ dir, config: `[image]\npause_image = "${reg.host}/userns/pause:1"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await d.cri.image.pullImage({ image: { image } });
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const runContainer = async (pod: { id: string; cfg: Record<string, unknown> }, command: string[], over: Record<string, unknown> = {}) => {
    const name = `c${++seq}`;
    const { containerId } = await d.cri.runtime.createContainer({
      podSandboxId: pod.id, sandboxConfig: pod.cfg,
      config: { metadata: { name }, image: { image }, command, logPath: `${name}.log`, ...over },
    });
    await d.cri.runtime.startContainer({ containerId });
    const s = await waitFor(`container ${name} to exit`, async () => {
      const st = (await d.cri.runtime.containerStatus({ containerId })).status!;
      return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
    }, 30_000);
    const out = (await readFile(s.logPath, "utf8")).split("\n").filter((l) => l).map((l) => l.split(" ").slice(3).join(" "));
    assert.equal(s.exitCode, 0, `container ${name} failed: ${out.join("\n")}`);
    return out;
  };

  test("Status reports user_namespaces for the default handler and runc (this host can make idmapped mounts)", async () => {
    const s = await d.cri.runtime.status({ verbose: false });
    assert.deepEqual(s.runtimeHandlers.map((h) => [h.name, h.features?.userNamespaces]), [["", true], ["runc", true]]);
  });

  test("one pinned user namespace for the pod: maps, owners, shared by its containers, sysctls inside, gone with the pod", async () => {
    const logDirectory = path.join(d.dir, "logs", "userns");
    const cfg = usernsPod("userns-pod", { logDirectory, linux: { sysctls: { "net.ipv4.ip_unprivileged_port_start": "123", "kernel.shm_rmid_forced": "1" } } });
    const { podSandboxId: id } = await d.cri.runtime.runPodSandbox({ config: cfg });
    const pod = { id, cfg };
    const pin = path.join(d.state, "ns", id, "user");
    const pinIno = (await stat(pin)).ino;
    assert.notEqual(pinIno, (await stat("/proc/self/ns/user")).ino, "the pin is not the host's user namespace");

    // A host dir the pod's root may write (it is not root on the host: mode 0777), and one bound idmapped.
    const plain = path.join(d.dir, "plain");
    const mapped = path.join(d.dir, "mapped");
    await mkdir(plain);
    await chmod(plain, 0o777);
    await mkdir(mapped);
    const out = await runContainer(pod, ["sh", "-c", [
      "cat /proc/self/uid_map /proc/self/gid_map", "id -u", "stat -c %u:%g /bin/sh /etc/owned-by-root /etc/hosts /etc/resolv.conf /dev/shm",
      "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced",
      "touch /plain/made-inside /mapped/made-inside", "stat -L -c %i /proc/self/ns/user",
    ].join("; ")], {
      mounts: [
        { containerPath: "/plain", hostPath: plain },
        { containerPath: "/mapped", hostPath: mapped, uidMappings: MAPPING, gidMappings: MAPPING },
      ],
    });
    const [uidMap, gidMap, uid, ...rest] = out;
    assert.deepEqual(uidMap!.trim().split(/\s+/).map(Number), [0, HOST_ID, LENGTH]);
    assert.deepEqual(gidMap!.trim().split(/\s+/).map(Number), [0, HOST_ID, LENGTH]);
    assert.equal(uid, "0");
    assert.deepEqual(rest.slice(0, 5), ["0:0", "0:0", "0:0", "0:0", "0:0"], "image files, pod files and /dev/shm look root-owned inside");
    assert.deepEqual(rest.slice(5, 7), ["123", "1"], "the pod's sysctls, set in namespaces the user namespace owns");
    assert.equal(Number(rest[7]), pinIno, "the container runs in the pinned user namespace");
    const made = await stat(path.join(plain, "made-inside"));
    assert.deepEqual([made.uid, made.gid], [HOST_ID, HOST_ID], "the pod's root is the mapped id on the host");
    const madeMapped = await stat(path.join(mapped, "made-inside"));
    assert.deepEqual([madeMapped.uid, madeMapped.gid], [0, 0], "through an idmapped bind, the pod's root writes as the host's");
    const hosts = await stat(path.join(d.state, "pods", id, "hosts"));
    assert.equal(hosts.uid, HOST_ID, "berth made /etc/hosts owned by the mapped root");

    const second = await runContainer(pod, ["stat", "-L", "-c", "%i", "/proc/self/ns/user"]);
    assert.deepEqual(second.map(Number), [pinIno], "a second container joins the same user namespace");
    assert.equal((await stat("/bin/sh")).uid, 0, "the image is not chowned (its files on the host stay root's)");

    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
    assert.deepEqual((await mountsUnder(d.dir)).filter((m) => m.includes(id) || m.includes("/mounts/")), [], "no pin or mount of the pod is left");
    await assert.rejects(readlink(pin), /ENOENT/);
  });

  test("a pod sharing one PID namespace runs its infra container in the user namespace too", async () => {
    const cfg = usernsPod("userns-pidpod", { logDirectory: path.join(d.dir, "logs", "pidpod") });
    (cfg.linux as { securityContext: { namespaceOptions: { pid: number } } }).securityContext.namespaceOptions.pid = NamespaceMode.POD;
    const { podSandboxId: id } = await d.cri.runtime.runPodSandbox({ config: cfg });
    const out = await runContainer({ id, cfg }, ["cat", "/proc/self/uid_map"]);
    assert.deepEqual(out[0]!.trim().split(/\s+/).map(Number), [0, HOST_ID, LENGTH]);
    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
  });

  test("refused: modes CONTAINER and TARGET, two mappings, container id 0 unmapped, a host namespace, mappings on NODE", async () => {
    const cases: Array<[Record<string, unknown>, RegExp, Record<string, number>?]> = [
      [{ mode: NamespaceMode.CONTAINER }, /userns_options\.mode CONTAINER is not supported/],
      [{ mode: NamespaceMode.TARGET }, /userns_options\.mode TARGET is not supported/],
      [{ mode: NamespaceMode.POD, uids: [...MAPPING, { containerId: LENGTH, hostId: 2_000_000, length: 10 }], gids: MAPPING }, /userns_options\.uids: .*exactly one mapping.*got 2/],
      [{ mode: NamespaceMode.POD, uids: MAPPING, gids: [{ containerId: 1, hostId: HOST_ID, length: LENGTH }] }, /userns_options\.gids: .*container id 0 \(root\) unmapped/],
      [{ mode: NamespaceMode.POD, uids: MAPPING, gids: MAPPING }, /host's network namespace/, { network: NamespaceMode.NODE }],
      [{ mode: NamespaceMode.NODE, uids: MAPPING, gids: MAPPING }, /mode NODE .* takes no uids\/gids/],
    ];
    for (const [userns, re, ns] of cases) {
      const cfg = usernsPod(`userns-bad-${++seq}`, {}, userns);
      Object.assign((cfg.linux as { securityContext: { namespaceOptions: object } }).securityContext.namespaceOptions, ns ?? {});
      await assert.rejects(d.cri.runtime.runPodSandbox({ config: cfg }), rpcError(status.INVALID_ARGUMENT, re));
    }
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items.filter((p) => p.metadata?.name.startsWith("userns-bad")), []);
  });

  test("mode NODE (the host's user namespace) runs as before", async () => {
    const cfg = usernsPod("userns-node", { logDirectory: path.join(d.dir, "logs", "node") }, { mode: NamespaceMode.NODE });
    const { podSandboxId: id } = await d.cri.runtime.runPodSandbox({ config: cfg });
    const out = await runContainer({ id, cfg }, ["stat", "-L", "-c", "%i", "/proc/self/ns/user"]);
    assert.equal(Number(out[0]), (await stat("/proc/self/ns/user")).ino);
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
  });
});
