import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import type { Snapshots } from "../image/types.js";
import type { CgroupStats, Cgroups } from "./cgroups.js";
import type { ContainerRecord } from "./container-record.js";
import { maxOpenFiles } from "./metrics.js";
import { CONTAINERS_PER_TURN, LayerUsageCache, parseNetDev, StatsCollector } from "./stats.js";
import type { SandboxRef } from "./types.js";

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0: 18446744073709551615  7    1    2    0     0          0         0     5000      40    3    4    0     0       0          0
 short: 1 2 3
  tun0:\t9 8 7 6 0 0 0 0 5 4 3 2 0 0 0 0`;

test("parseNetDev: the header skipped, 16 counters an interface (u64 whole), tabs as spaces, a short line skipped", () => {
  const got = parseNetDev(NET_DEV);
  assert.deepEqual(got.map((i) => i.name), ["lo", "eth0", "tun0"]);
  assert.deepEqual(got[1], {
    name: "eth0", rxBytes: 18446744073709551615n, rxPackets: 7n, rxErrors: 1n, rxDropped: 2n,
    txBytes: 5000n, txPackets: 40n, txErrors: 3n, txDropped: 4n,
  });
  assert.deepEqual([got[2]!.rxBytes, got[2]!.rxDropped, got[2]!.txBytes, got[2]!.txDropped], [9n, 6n, 5n, 2n]);
  assert.deepEqual(parseNetDev(""), []);
  assert.deepEqual(parseNetDev("Inter-|\n face |\n"), []);
  // This process's own file parses and has lo.
  assert.ok(parseNetDev(readFileSync("/proc/self/net/dev", "utf8")).some((i) => i.name === "lo"));
});

test("maxOpenFiles: the soft limit of Max open files; unlimited is left out", () => {
  const limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
  assert.equal(maxOpenFiles(limits), 1024n);
  assert.equal(maxOpenFiles(limits.replace("1024 ", "unlimited")), undefined);
  assert.equal(maxOpenFiles(undefined), undefined);
});

function fakeSnapshots(walks: string[]): Snapshots {
  let n = 0;
  return {
    prepare: () => Promise.reject(new Error("no")),
    mountImage: () => Promise.reject(new Error("no")),
    remove: () => Promise.resolve(),
    usage: async (key) => {
      walks.push(key);
      await new Promise((r) => setTimeout(r, 5));
      if (key === "gone") throw new Error("not found");
      n++;
      return { bytes: 4096 * n, inodes: n };
    },
  };
}

test("LayerUsageCache: walks once while fresh, answers the old value while a re-walk runs, waits past twice the age", async () => {
  const walks: string[] = [];
  const c = new LayerUsageCache(fakeSnapshots(walks), 200, 2);
  const first = c.get("a");
  assert.ok(first instanceof Promise, "the first ask waits for a walk");
  assert.ok(c.get("a") instanceof Promise, "a second ask meanwhile shares it");
  assert.deepEqual(await first, { bytes: 4096, inodes: 1 });
  assert.deepEqual(walks, ["a"]);
  assert.deepEqual(c.get("a"), { bytes: 4096, inodes: 1 });
  await new Promise((r) => setTimeout(r, 250));
  // Past the age: the old value now, a re-walk started.
  assert.deepEqual(c.get("a"), { bytes: 4096, inodes: 1 });
  // The walk starts once the bound lets it (a turn of the event loop at most).
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(walks, ["a", "a"]);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(c.get("a"), { bytes: 8192, inodes: 2 });
  await new Promise((r) => setTimeout(r, 450));
  // Past twice the age: the caller waits for the fresh walk.
  const late = c.get("a");
  assert.ok(late instanceof Promise);
  assert.deepEqual(await late, { bytes: 12288, inodes: 3 });
  // A failed walk reads undefined, and is kept for the age too.
  assert.equal(await c.get("gone"), undefined);
  assert.equal(c.get("gone"), undefined);
  await new Promise((r) => setTimeout(r, 450));
  c.prune();
  assert.ok(c.get("gone") instanceof Promise, "pruned: walked again");
});

function record(id: string, sandboxId: string, pid: number): ContainerRecord {
  return {
    id, sandboxId, kind: "container", name: id, metadata: { name: id, attempt: 0 }, labels: { app: sandboxId }, annotations: {},
    phase: "running", pid, cgroupsPath: `/test/${id}`, rootfs: `/rootfs/${id}`,
  } as unknown as ContainerRecord;
}

test("StatsCollector: every container's counters, the pod's sum and network once per pod, yielding between batches", async () => {
  const pods = ["p1", "p2", "p3"];
  const recs = new Map<string, ContainerRecord>();
  for (const p of pods) for (let k = 0; k < 9; k++) recs.set(`${p}-c${k}`, record(`${p}-c${k}`, p, process.pid));
  recs.set("p1-stopped", { ...record("p1-stopped", "p1", 0), phase: "exited" });
  const reads: string[] = [];
  const limitReads: string[] = [];
  let limit = 1000n;
  let turns = 0;
  let ticking = true;
  const tick = () => {
    if (!ticking) return;
    turns++;
    setImmediate(tick);
  };
  const cgroups = {
    version: 2, driver: "cgroupfs",
    stats: (p: string, want?: { pids?: boolean; memoryLimit?: boolean }): CgroupStats => {
      reads.push(p);
      if (want?.memoryLimit !== false) limitReads.push(p);
      return {
        timestamp: BigInt(Date.now()) * 1_000_000n, cpuUsageNs: 1000n, memoryUsageBytes: 300n, workingSetBytes: 200n, rssBytes: 100n,
        pageFaults: 5n, majorPageFaults: 1n, memoryLimitBytes: want?.memoryLimit === false ? undefined : limit, oomKills: 0, pids: want?.pids === false ? 0 : 2,
      };
    },
  } as unknown as Cgroups;
  const sandboxes = new Map<string, SandboxRef>(pods.map((id) => [id, { id, state: "ready", metadata: { name: id, namespace: "ns", uid: id, attempt: 0 }, labels: {}, annotations: {}, netnsPath: "/run/netns/x" } as unknown as SandboxRef]));
  const walks: string[] = [];
  const s = new StatsCollector(
    {
      record: async (id) => recs.get(id)!,
      allContainers: async () => [...recs.values()],
      containersOf: (sb) => [...recs.values()].filter((r) => r.sandboxId === sb),
      infraOf: () => undefined,
    },
    cgroups, fakeSnapshots(walks), { getSandbox: (id) => sandboxes.get(id) }, () => pods,
  );
  setImmediate(tick);
  const list = await s.listContainerStats(undefined);
  assert.equal(list.length, 27, "the running containers only");
  assert.ok(turns >= Math.floor(27 / CONTAINERS_PER_TURN), `yielded between batches (${turns} turns)`);
  assert.deepEqual(list[0]!.writableLayer?.fsId, { mountpoint: "/rootfs/p1-c0" }, "the first walk is waited for");
  assert.equal(list[0]!.memory!.availableBytes!.value, 800n);
  assert.equal(list[0]!.cpu!.usageNanoCores, undefined, "no earlier sample");
  assert.equal(new Set(reads).size, 27, "each cgroup read once");
  assert.deepEqual((await s.listContainerStats({ id: "", podSandboxId: "p2", labelSelector: { app: "p2" } })).map((c) => c.attributes!.id), [...recs.keys()].filter((k) => k.startsWith("p2-")));
  reads.length = 0;
  const pstats = await s.listPodStats(undefined);
  ticking = false;
  assert.deepEqual(pstats.map((p) => p.attributes!.id), pods);
  assert.equal(reads.length, 27, "one read per container for the pod sums and the containers' own stats");
  const p1 = pstats[0]!.linux!;
  assert.equal(p1.containers.length, 9);
  assert.equal(p1.memory!.workingSetBytes!.value, 9n * 200n);
  assert.equal(p1.process!.processCount!.value, 18n);
  assert.ok(p1.network && p1.network.interfaces.every((i) => i.name !== "lo"), "this process's interfaces, lo left out");
  assert.equal(walks.filter((k) => k === "p1-c0").length, 1, "the layer walked once for both calls");
  assert.equal(limitReads.length, 27, "each memory limit read once, then reused while the resources stay");
  assert.equal(pstats[0]!.linux!.containers[0]!.memory!.availableBytes!.value, 800n);
  // UpdateContainerResources replaces the record's resources: the limit is read again.
  limit = 2000n;
  recs.get("p1-c1")!.resources = { memoryLimitInBytes: 2000n } as ContainerRecord["resources"];
  const again = await s.listContainerStats({ id: "p1-c", podSandboxId: "", labelSelector: {} });
  assert.deepEqual(limitReads.slice(27), ["/test/p1-c1"]);
  assert.deepEqual(again.slice(0, 2).map((c) => c.memory!.availableBytes!.value), [800n, 1800n]);
  // The attributes are one object per record from poll to poll (their encoded bytes are kept), and a new one once the annotations change.
  assert.equal(again[0]!.attributes, list[0]!.attributes);
  assert.equal((await s.listPodStats(undefined))[0]!.attributes, pstats[0]!.attributes);
  const r0 = recs.get("p1-c0")!;
  r0.annotations = { ...r0.annotations, changed: "yes" };
  const after = (await s.listContainerStats({ id: "p1-c0", podSandboxId: "", labelSelector: {} }))[0]!.attributes!;
  assert.notEqual(after, list[0]!.attributes);
  assert.equal(after.annotations["changed"], "yes");
});
