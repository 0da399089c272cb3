import assert from "node:assert/strict";
import { test } from "node:test";
import { ContainerConfig } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import { validateContainerConfig } from "./container-validate.js";

const dirs = { root: "/var/lib/berth", state: "/run/berth" };
const base = { metadata: { name: "app" }, image: { image: "busybox" } };

test("validateContainerConfig refuses each bad field with a message naming it", () => {
  const cases: Array<[string, object, RegExp]> = [
    ["empty name", { metadata: { name: "" } }, /metadata\.name/],
    ["name with slash", { metadata: { name: "a/b" } }, /metadata\.name/],
    ["name with newline", { metadata: { name: "a\nb" } }, /metadata\.name/],
    ["NUL in args", { args: ["a\u0000b"] }, /config\.args/],
    ["NUL in command", { command: ["sh\u0000"] }, /config\.command/],
    ["env name with newline", { envs: [{ key: "A\nB", value: Buffer.from("1") }] }, /config\.envs name/],
    ["env name with =", { envs: [{ key: "A=B", value: Buffer.from("1") }] }, /config\.envs name/],
    ["empty env name", { envs: [{ key: "", value: Buffer.from("1") }] }, /config\.envs name/],
    ["NUL in env value", { envs: [{ key: "A", value: Buffer.from("x\u0000") }] }, /config\.envs A/],
    ["env value that is not UTF-8", { envs: [{ key: "A", value: Buffer.from([0x66, 0xff, 0xfe]) }] }, /config\.envs A: the value is not valid UTF-8/],
    ["mount over /", { mounts: [{ containerPath: "/", hostPath: "/tmp" }] }, /cover the container's root/],
    ["mount with ..", { mounts: [{ containerPath: "/data/../etc", hostPath: "/tmp" }] }, /container_path/],
    ["host path with ..", { mounts: [{ containerPath: "/data", hostPath: "/tmp/../etc" }] }, /host_path/],
    ["berth's root", { mounts: [{ containerPath: "/x", hostPath: "/var/lib/berth/containers" }] }, /berth's own data/],
    ["berth's state", { mounts: [{ containerPath: "/x", hostPath: "/run/berth" }] }, /berth's own data/],
    ["recursive read-only, not read-only", { mounts: [{ containerPath: "/d", hostPath: "/tmp", recursiveReadOnly: true }] }, /mount \/d: recursive_read_only needs readonly: true/],
    ["recursive read-only, rslave", { mounts: [{ containerPath: "/d", hostPath: "/tmp", readonly: true, recursiveReadOnly: true, propagation: 1 }] }, /needs propagation PROPAGATION_PRIVATE, not PROPAGATION_HOST_TO_CONTAINER/],
    ["recursive read-only, rshared", { mounts: [{ containerPath: "/d", hostPath: "/tmp", readonly: true, recursiveReadOnly: true, propagation: 2 }] }, /not PROPAGATION_BIDIRECTIONAL/],
    ["label key with newline", { labels: { "a\nb": "1" } }, /config\.labels key/],
    ["cpu shares 1", { linux: { resources: { cpuShares: 1n } } }, /cpu_shares/],
    ["cpu quota 10", { linux: { resources: { cpuQuota: 10n } } }, /cpu_quota/],
    ["cpu period huge", { linux: { resources: { cpuPeriod: 5_000_000n } } }, /cpu_period/],
    ["negative memory", { linux: { resources: { memoryLimitInBytes: -5n } } }, /memory_limit_in_bytes/],
    ["oom score 5000", { linux: { resources: { oomScoreAdj: 5000n } } }, /oom_score_adj/],
    ["cpuset garbage", { linux: { resources: { cpusetCpus: "0-2;rm" } } }, /cpuset_cpus/],
    ["hugepage size", { linux: { resources: { hugepageLimits: [{ pageSize: "huge", limit: 1n }] } } }, /page_size/],
    ["unified key path", { linux: { resources: { unified: { "../memory.max": "1" } } } }, /unified key/],
  ];
  for (const [what, extra, re] of cases) {
    assert.throws(() => validateContainerConfig(ContainerConfig.fromPartial({ ...base, ...extra }), dirs), (e: Error) => e instanceof InvalidArgument && re.test(e.message), what);
  }
});

test("validateContainerConfig accepts ordinary configs: multi-line env values, hostPath /, limits", () => {
  validateContainerConfig(ContainerConfig.fromPartial({
    ...base,
    envs: [{ key: "CERT", value: Buffer.from("-----BEGIN-----\nabc\n-----END-----\n") }],
    mounts: [{ containerPath: "/host", hostPath: "/", readonly: true }, { containerPath: "/data", hostPath: "/var/lib/data" }],
    labels: { "io.kubernetes.container.name": "app" },
    linux: { resources: { cpuShares: 512n, cpuQuota: 50_000n, cpuPeriod: 100_000n, memoryLimitInBytes: 64n << 20n, oomScoreAdj: 100n, cpusetCpus: "0-1", hugepageLimits: [{ pageSize: "2MB", limit: 0n }] } },
  }), dirs);
});
