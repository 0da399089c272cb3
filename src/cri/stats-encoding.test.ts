import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ContainerStats, ContainerStatsResponse, ListContainerStatsResponse, ListPodSandboxStatsResponse, PodSandboxStats, PodSandboxStatsResponse,
  StreamContainerStatsResponse, StreamPodSandboxStatsResponse,
} from "../gen/api.js";
import {
  encodeContainerStats, encodePodStats, serializeContainerStats, serializeListContainerStats, serializeListPodSandboxStats, serializePodSandboxStats,
  serializeStreamContainerStats, serializeStreamPodSandboxStats,
} from "./stats-encoding.js";

const u = (v: bigint) => ({ value: v });
const NOW = 1_796_000_000_123_456_789n;

function container(i: number, o: { mountpoint?: string; big?: bigint; labelBytes?: number; extras?: boolean } = {}): ContainerStats {
  const big = o.big ?? 0n;
  return {
    attributes: { id: `${i}`.padStart(64, "c"), metadata: { name: `c${i}`, attempt: i }, labels: { "io.kubernetes.pod.name": `p${i}`, big: "x".repeat(o.labelBytes ?? 0) }, annotations: { a: "b" } },
    cpu: { timestamp: NOW + BigInt(i), usageCoreNanoSeconds: u(123_456_789n + big), usageNanoCores: i % 3 === 0 ? undefined : u(0n), psi: o.extras ? { Full: { Total: 5n, Avg10: 0.5, Avg60: 0, Avg300: 1.25 }, Some: undefined } : undefined },
    memory: {
      timestamp: NOW, workingSetBytes: u(1n << 20n), availableBytes: i % 2 ? undefined : u(7n), usageBytes: u(2n << 20n), rssBytes: u(big),
      pageFaults: u(4567n), majorPageFaults: u(0n), psi: o.extras ? { Full: undefined, Some: { Total: 1n, Avg10: 0, Avg60: 2.5, Avg300: 0 } } : undefined,
    },
    writableLayer: i % 4 === 3 ? undefined : { timestamp: NOW, fsId: { mountpoint: o.mountpoint ?? `/var/lib/berth/c${i}/rootfs` }, usedBytes: u(4096n), inodesUsed: u(3n) },
    swap: o.extras ? { timestamp: NOW, swapAvailableBytes: u(1n), swapUsageBytes: undefined } : undefined,
    io: o.extras ? { timestamp: -5n, psi: undefined } : undefined,
  };
}

function pod(i: number, containers: number, o: Parameters<typeof container>[1] = {}): PodSandboxStats {
  const eth0 = { name: "eth0", rxBytes: u(1000n), rxErrors: u(0n), txBytes: u(2000n + (o.big ?? 0n)), txErrors: u(0n) };
  return {
    attributes: { id: `${i}`.padStart(64, "p"), metadata: { name: `pod${i}`, uid: `uid-${i}`, namespace: "default", attempt: 1 }, labels: { app: "x" }, annotations: {} },
    linux: {
      cpu: container(i, o).cpu, memory: container(i, o).memory,
      network: i % 2 ? undefined : { timestamp: NOW, defaultInterface: eth0, interfaces: [eth0, { ...eth0, name: "net1" }] },
      process: { timestamp: NOW, processCount: u(BigInt(containers + 1)) },
      containers: Array.from({ length: containers }, (_, j) => container(i * 100 + j, o)),
      io: o.extras ? { timestamp: NOW, psi: undefined } : undefined,
    },
    windows: o.extras ? { cpu: undefined, memory: undefined, network: undefined, process: undefined, containers: [] } : undefined,
  };
}

const SHAPES: Array<Parameters<typeof container>[1]> = [
  {},
  // Values past 2^53 and at 2^64 - 1; a 300-byte mountpoint (a two-byte length) and a non-ASCII one.
  { big: (1n << 64n) - 1n - 123_456_789n, mountpoint: "/m".repeat(150) },
  { big: 1n << 53n, mountpoint: "/var/lib/bérth/ünïcode/rootfs" },
  // Labels big enough for three length bytes, and every field berth itself never fills.
  { labelBytes: 20_000, extras: true },
];

describe("stats encoding", () => {
  test("the container stats answers are byte for byte what the generated encoder writes", () => {
    for (const shape of SHAPES) {
      const stats = Array.from({ length: 12 }, (_, i) => container(i, shape));
      const ours = serializeListContainerStats({ stats });
      assert.deepEqual(ours, Buffer.from(ListContainerStatsResponse.encode({ stats }).finish()));
      assert.deepEqual(ListContainerStatsResponse.decode(ours), { stats });
      assert.deepEqual(serializeContainerStats({ stats: stats[1] }), Buffer.from(ContainerStatsResponse.encode({ stats: stats[1] }).finish()));
      assert.deepEqual(serializeStreamContainerStats({ containerStats: stats }), Buffer.from(StreamContainerStatsResponse.encode({ containerStats: stats }).finish()));
      assert.deepEqual(Buffer.from(encodeContainerStats(stats[2]!)), Buffer.from(ContainerStats.encode(stats[2]!).finish()));
    }
    assert.equal(serializeListContainerStats({ stats: [] }).length, 0);
    assert.equal(serializeContainerStats({ stats: undefined }).length, 0);
  });

  test("the pod stats answers are byte for byte what the generated encoder writes", () => {
    for (const shape of SHAPES) {
      const stats = Array.from({ length: 6 }, (_, i) => pod(i, i % 3, shape));
      const ours = serializeListPodSandboxStats({ stats });
      assert.deepEqual(ours, Buffer.from(ListPodSandboxStatsResponse.encode({ stats }).finish()));
      assert.deepEqual(ListPodSandboxStatsResponse.decode(ours), { stats });
      assert.deepEqual(serializePodSandboxStats({ stats: stats[0] }), Buffer.from(PodSandboxStatsResponse.encode({ stats: stats[0] }).finish()));
      assert.deepEqual(serializeStreamPodSandboxStats({ podSandboxStats: stats }), Buffer.from(StreamPodSandboxStatsResponse.encode({ podSandboxStats: stats }).finish()));
      assert.deepEqual(Buffer.from(encodePodStats(stats[1]!)), Buffer.from(PodSandboxStats.encode(stats[1]!).finish()));
    }
  });

  test("an answer larger than the writer's buffer, and each answer its own bytes", () => {
    // 110 pods of 2 containers with 1 KiB of labels each: well past the 64 KiB the writer starts with.
    const stats = Array.from({ length: 110 }, (_, i) => pod(i, 2, { labelBytes: 1024 }));
    const first = serializeListPodSandboxStats({ stats });
    assert.ok(first.length > 256 * 1024);
    assert.deepEqual(first, Buffer.from(ListPodSandboxStatsResponse.encode({ stats }).finish()));
    const copy = Buffer.from(first);
    const second = serializeListPodSandboxStats({ stats: stats.slice(0, 1) });
    assert.deepEqual(first, copy, "a later answer must not write over an earlier one");
    assert.deepEqual(ListPodSandboxStatsResponse.decode(second), { stats: stats.slice(0, 1) });
  });

  test("a value written twice in a row, then another, each encoded right (the last-value memo)", () => {
    for (const ts of [NOW, NOW, NOW + 1n, -1n, -1n, 0n, (1n << 63n) - 1n]) {
      const s = container(1);
      s.cpu!.timestamp = ts;
      s.memory!.timestamp = ts;
      assert.deepEqual(serializeContainerStats({ stats: s }), Buffer.from(ContainerStatsResponse.encode({ stats: s }).finish()));
    }
  });
});
