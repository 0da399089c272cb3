// Bad CRI requests over berthd's real socket: each gets a gRPC status that names what is
// wrong (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for an oversized message), and nothing is
// created: no pod, no image, no file under root/state, no mount.
import { credentials, Metadata, makeGenericClientConstructor, status, type ServiceError } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { NamespaceMode } from "../src/gen/api.js";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { mountsUnder, podConfig } from "./sandbox-net.js";

type GrpcErr = { code: number; details: string };

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true }).catch(() => [] as string[])).map(String);
}

describe("bad CRI input", () => {
  let d: Berthd;
  let emptyRoot: string[];

  before(async () => {
    d = await startBerthd();
    emptyRoot = await filesUnder(d.root);
  });
  after(async () => {
    await d?.cleanup();
  });

  const refused = (code: number, re: RegExp) => (e: GrpcErr) => {
    assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
    assert.match(e.details, re);
    return true;
  };

  const badPods: Array<[string, Record<string, unknown>, RegExp]> = [
    ["no metadata", { metadata: undefined }, /metadata is required/],
    ["empty name", { metadata: { name: "", namespace: "ns", uid: "u" } }, /metadata\.name must not be empty/],
    ["name with NUL", { metadata: { name: "a\u0000b", namespace: "ns", uid: "u" } }, /metadata\.name/],
    ["namespace with newline", { metadata: { name: "a", namespace: "n\ns", uid: "u" } }, /metadata\.namespace/],
    ["uid too long", { metadata: { name: "a", namespace: "ns", uid: "u".repeat(300) } }, /metadata\.uid/],
    ["bad hostname", { hostname: "not a host" }, /hostname/],
    ["relative log directory", { logDirectory: "logs" }, /log_directory/],
    ["log directory with ..", { logDirectory: "/var/log/pods/../../../etc" }, /log_directory/],
    ["label key with newline", { labels: { "a\nb": "1" } }, /labels key/],
    ["annotation value 70 KB", { annotations: { big: "x".repeat(70_000) } }, /annotations\["big"\]/],
    ["non-namespaced sysctl", { linux: { sysctls: { "kernel.hostname": "x" } } }, /not namespaced/],
    ["sysctl path escape", { linux: { sysctls: { "net/../../kernel/x": "1" } } }, /not a valid sysctl/],
    ["sysctl value with newline", { linux: { sysctls: { "net.ipv4.ip_forward": "1\n0" } } }, /one line/],
    ["unknown network mode", { linux: { securityContext: { namespaceOptions: { network: 7 } } } }, /namespace_options\.network = 7/],
    ["pid TARGET for a pod", { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET } } } }, /namespace_options\.pid = TARGET/],
    ["cgroup parent escaping", { linux: { cgroupParent: "/../../x" } }, /cgroup_parent/],
    ["relative cgroup parent", { linux: { cgroupParent: "kubepods" } }, /cgroup_parent/],
    ["DNS server not an IP", { dnsConfig: { servers: ["dns.example.com"] } }, /not an IP address/],
    ["DNS search with spaces", { dnsConfig: { searches: ["a b"] } }, /dns_config\.searches/],
    ["host port out of range", { portMappings: [{ containerPort: 80, hostPort: 70000 }] }, /1-65535/],
    ["unknown protocol", { portMappings: [{ containerPort: 80, hostPort: 18300, protocol: 9 }] }, /unknown protocol/],
    ["host IP not an IP", { portMappings: [{ containerPort: 80, hostPort: 18301, hostIp: "localhost" }] }, /host_ip/],
    ["bad bandwidth annotation", { annotations: { "kubernetes.io/ingress-bandwidth": "lots" } }, /bandwidth/],
  ];

  test("RunPodSandbox: every bad field is INVALID_ARGUMENT naming it, and nothing is created", async () => {
    for (const [what, extra, re] of badPods) {
      const cfg = { ...podConfig(`bad-${what.replace(/\W+/g, "-")}`), ...extra };
      await assert.rejects(d.cri.runtime.runPodSandbox({ config: cfg }), refused(status.INVALID_ARGUMENT, re), what);
    }
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: podConfig("h"), runtimeHandler: "../runc" }), refused(status.INVALID_ARGUMENT, /runtime_handler/));
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
    assert.deepEqual(await filesUnder(d.layout.pins), []);
    assert.deepEqual(await filesUnder(d.layout.pods), []);
    assert.deepEqual(await mountsUnder(d.dir), []);
    assert.deepEqual(await filesUnder(d.root), emptyRoot, "nothing written under root");
  });

  test("pod RPCs with bad ids or filters", async () => {
    await assert.rejects(d.cri.runtime.stopPodSandbox({ podSandboxId: "" }), refused(status.INVALID_ARGUMENT, /pod_sandbox_id is required/));
    await assert.rejects(d.cri.runtime.removePodSandbox({ podSandboxId: "" }), refused(status.INVALID_ARGUMENT, /pod_sandbox_id is required/));
    await assert.rejects(d.cri.runtime.podSandboxStatus({ podSandboxId: "" }), refused(status.INVALID_ARGUMENT, /pod_sandbox_id is required/));
    await assert.rejects(d.cri.runtime.podSandboxStatus({ podSandboxId: "../../etc" }), refused(status.NOT_FOUND, /not found/));
    await assert.rejects(d.cri.runtime.listPodSandbox({ filter: { state: { state: 9 as never } } }), refused(status.INVALID_ARGUMENT, /filter\.state/));
    // Stop and Remove of an unknown pod succeed (kubelet retries them), and touch nothing
    await d.cri.runtime.stopPodSandbox({ podSandboxId: "0".repeat(64) });
    await d.cri.runtime.removePodSandbox({ podSandboxId: "../../../../tmp" });
    assert.deepEqual(await filesUnder(d.root), emptyRoot);
  });

  test("image RPCs: empty, malformed and hostile references", async () => {
    for (const image of ["", "Busybox", "a b", "x\u0000y", "../../../../etc/passwd", "registry:99999999/x", "K".repeat(5000), `busybox@sha256:${"z".repeat(64)}`]) {
      await assert.rejects(d.cri.image.pullImage({ image: { image } }), refused(status.INVALID_ARGUMENT, /./), JSON.stringify(image.slice(0, 40)));
    }
    await assert.rejects(d.cri.image.imageStatus({ image: { image: "" } }), refused(status.INVALID_ARGUMENT, /image\.image/));
    await assert.rejects(d.cri.image.removeImage({ image: undefined }), refused(status.INVALID_ARGUMENT, /image\.image/));
    assert.deepEqual((await d.cri.image.listImages({})).images, []);
  });

  test("container RPCs: every bad field is INVALID_ARGUMENT naming it, and nothing is created", async () => {
    const podCfg = podConfig("ctr-bad-input", { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD } } } });
    const pod = (await d.cri.runtime.runPodSandbox({ config: podCfg })).podSandboxId;
    try {
      const filesBefore = await filesUnder(d.root);
      const good = { metadata: { name: "c" }, image: { image: "busybox" }, command: ["true"] };
      const bad: Array<[string, Record<string, unknown>, RegExp]> = [
        ["name with a slash", { metadata: { name: "a/b" } }, /metadata\.name/],
        ["env name with a newline", { envs: [{ key: "A\nB", value: Buffer.from("1") }] }, /config\.envs name/],
        ["NUL in args", { args: ["x\u0000y"] }, /config\.args/],
        ["mount over the root", { mounts: [{ containerPath: "/", hostPath: "/tmp" }] }, /container's root/],
        ["mount of berth's root", { mounts: [{ containerPath: "/steal", hostPath: d.root }] }, /berth's own data/],
        ["mount path with ..", { mounts: [{ containerPath: "/x/../../etc", hostPath: "/tmp" }] }, /container_path/],
        ["relative mount", { mounts: [{ containerPath: "/x", hostPath: "relative/dir" }] }, /must be absolute/],
        ["label key with newline", { labels: { "k\n": "v" } }, /config\.labels key/],
        ["cpu shares 1", { linux: { resources: { cpuShares: 1n } } }, /cpu_shares/],
        ["negative memory limit", { linux: { resources: { memoryLimitInBytes: -1n } } }, /memory_limit_in_bytes/],
        ["log path escaping the pod's log dir", { logPath: "../../etc/x.log" }, /log_path/],
        ["no image", { image: { image: "" } }, /image/],
      ];
      for (const [what, over, re] of bad) {
        await assert.rejects(d.cri.runtime.createContainer({ podSandboxId: pod, sandboxConfig: podCfg, config: { ...good, ...over } }), refused(status.INVALID_ARGUMENT, re), what);
      }
      await assert.rejects(d.cri.runtime.createContainer({ podSandboxId: pod, sandboxConfig: podCfg }), refused(status.INVALID_ARGUMENT, /config is required/));
      await assert.rejects(d.cri.runtime.createContainer({ podSandboxId: "", config: good }), refused(status.INVALID_ARGUMENT, /pod_sandbox_id/));
      await assert.rejects(d.cri.runtime.createContainer({ podSandboxId: "f".repeat(64), config: good }), refused(status.NOT_FOUND, /not found/));
      await assert.rejects(d.cri.runtime.stopContainer({ containerId: "x", timeout: -1n }), refused(status.INVALID_ARGUMENT, /timeout/));
      await assert.rejects(d.cri.runtime.execSync({ containerId: "x", cmd: [] }), refused(status.INVALID_ARGUMENT, /cmd/));
      await assert.rejects(d.cri.runtime.execSync({ containerId: "x", cmd: ["true"], timeout: -5n }), refused(status.INVALID_ARGUMENT, /timeout/));
      await assert.rejects(d.cri.runtime.startContainer({ containerId: "" }), refused(status.INVALID_ARGUMENT, /container_id/));
      await assert.rejects(d.cri.runtime.updateContainerResources({ containerId: "x", linux: { cpuQuota: 5n } }), refused(status.INVALID_ARGUMENT, /cpu_quota/));
      assert.deepEqual((await d.cri.runtime.listContainers({})).containers, []);
      assert.deepEqual(await filesUnder(d.layout.bundles), []);
      assert.deepEqual(await filesUnder(d.root), filesBefore, "nothing written under root");
    } finally {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: pod });
      await d.cri.runtime.removePodSandbox({ podSandboxId: pod });
    }
    assert.deepEqual(await mountsUnder(d.dir), []);
  });

  test("streaming RPCs: bad requests get INVALID_ARGUMENT or NOT_FOUND, no URL", async () => {
    await assert.rejects(d.cri.runtime.exec({ containerId: "", cmd: ["sh"], stdout: true }), refused(status.INVALID_ARGUMENT, /must be set/));
    await assert.rejects(d.cri.runtime.exec({ containerId: "abc", cmd: [], stdout: true }), refused(status.INVALID_ARGUMENT, /cmd/));
    await assert.rejects(d.cri.runtime.exec({ containerId: "abc", cmd: ["sh"] }), refused(status.INVALID_ARGUMENT, /stdin, stdout or stderr/));
    await assert.rejects(d.cri.runtime.exec({ containerId: "abc", cmd: ["sh"], tty: true, stdout: true, stderr: true }), refused(status.INVALID_ARGUMENT, /tty and stderr/));
    await assert.rejects(d.cri.runtime.attach({ containerId: "abc", stdout: true }), (e: GrpcErr) => e.code === status.NOT_FOUND || e.code === status.INVALID_ARGUMENT);
    await assert.rejects(d.cri.runtime.portForward({ podSandboxId: "abc", port: [70000] }), refused(status.INVALID_ARGUMENT, /out of range/));
  });

  test("malformed and oversized messages: a clear status, berthd keeps serving", async () => {
    const Ctor = makeGenericClientConstructor({
      RunPodSandbox: {
        path: "/runtime.v1.RuntimeService/RunPodSandbox", requestStream: false, responseStream: false,
        requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b,
      },
    } as never, "raw");
    const raw = new Ctor(`unix://${d.socket}`, credentials.createInsecure(), { "grpc.max_send_message_length": 64 << 20 }) as unknown as { RunPodSandbox: Function; close(): void };
    const send = (payload: Buffer) => new Promise<ServiceError | null>((resolve) => raw.RunPodSandbox(payload, new Metadata(), { deadline: Date.now() + 20_000 }, (err: ServiceError | null) => resolve(err)));
    try {
        const truncated = await send(Buffer.from([0x0a, 0x10, 0x0a, 0x05, 0x61]));
        assert.equal(truncated?.code, status.INVALID_ARGUMENT, truncated?.details);
        assert.match(truncated!.details, /not a valid protobuf message/);
        const huge = await send(Buffer.alloc(17 << 20, 0x41));
        assert.equal(huge?.code, status.RESOURCE_EXHAUSTED, huge?.details);
    } finally {
      raw.close();
    }
    await d.cri.runtime.version({});
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
    assert.deepEqual(await filesUnder(d.root), emptyRoot);
  });
});
