// The benchmark's pure parts: summaries, report cells, generated configs, cleanup parsing.
// (The benchmark itself runs only under `make bench`.)
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { parse } from "smol-toml";
import { loadConfig } from "../src/config.js";
import { benchIptablesRules, mountsUnder, splitShellish } from "./cleanup.js";
import { conflist, NETWORKS } from "./cni.js";
import { newGroup, newRow } from "./measure.js";
import { CRITEST_BEGIN, CRITEST_END, critestSection, goals, groupTable, serversSection, SERVERS_BEGIN, SERVERS_END, writeCritestSection } from "./report.js";
import { berthConfig, containerdConfig, crioConfig, crioRegistries, type RuntimeUnderTest } from "./runtimes.js";
import { pollOnSchedule } from "./workloads.js";
import { formatSpread, formatValue, ratio, summarize } from "./stats.js";

describe("stats", () => {
  const cases: Array<[number[], { median: number; min: number; max: number } | undefined]> = [
    [[], undefined],
    [[5], { median: 5, min: 5, max: 5 }],
    [[3, 1, 2], { median: 2, min: 1, max: 3 }],
    [[4, 1, 3, 2], { median: 2.5, min: 1, max: 4 }],
  ];
  for (const [samples, want] of cases) {
    test(`summarize ${JSON.stringify(samples)}`, () => {
      const s = summarize(samples);
      assert.deepEqual(s && { median: s.median, min: s.min, max: s.max }, want);
    });
  }
  test("ratio and formatting", () => {
    assert.equal(ratio(50, 100), "0.50");
    assert.equal(ratio(undefined, 100), "–");
    assert.equal(ratio(1, 0), "–");
    assert.equal(formatValue(123.456, "ms"), "123 ms");
    assert.equal(formatValue(12.345, "ms"), "12.3 ms");
    assert.equal(formatValue(1.2345, "MiB"), "1.23 MiB");
    assert.equal(formatSpread(summarize([1, 2]), "ms"), "1.00 ms – 2.00 ms");
    assert.equal(formatSpread(summarize([1]), "ms"), "(1 sample)");
  });
});

describe("report", () => {
  test("a row shows medians, ratio, spreads, and the reason a runtime has no figure", () => {
    const a = newRow("runp", "RunPodSandbox");
    a.samples.berth = [10, 20, 30];
    a.samples.containerd = [40, 50, 60];
    const b = newRow("exec", "ExecSync");
    b.missing.berth = "n/a (UNIMPLEMENTED: ExecSync)";
    b.samples.containerd = [5];
    const table = groupTable(newGroup("Pods", "median of 3", [a, b]));
    assert.match(table, /\| RunPodSandbox \| 20\.0 ms \| 50\.0 ms \| 0\.40 \| 10\.0 ms – 30\.0 ms \| 40\.0 ms – 60\.0 ms \|/);
    assert.match(table, /\| ExecSync \| n\/a \(UNIMPLEMENTED: ExecSync\) \| 5\.00 ms \| – \| – \| \(1 sample\) \|/);
  });
  test("goals compare berth's median with containerd's", () => {
    const a = newRow("runp", "RunPodSandbox");
    a.samples.berth = [40];
    a.samples.containerd = [100];
    const g = goals([newGroup("Pods", "", [a])]);
    assert.equal(g.find((x) => x.text.startsWith("RunPodSandbox <= 0.5x"))!.value, 0.4);
    assert.equal(g.find((x) => x.text.startsWith("ListContainers"))!.value, undefined);
  });
  test("the critest section of an earlier report is kept", () => {
    const old = `# x\n${CRITEST_BEGIN}\nfigures from critest\n${CRITEST_END}\n`;
    assert.equal(critestSection(old), `${CRITEST_BEGIN}\nfigures from critest\n${CRITEST_END}`);
    assert.match(critestSection(undefined), /Not run yet/);
    assert.equal(serversSection(`# x\n${SERVERS_BEGIN}\nby hand\n${SERVERS_END}\n${CRITEST_BEGIN}\nc\n${CRITEST_END}`), `${SERVERS_BEGIN}\nby hand\n${SERVERS_END}`);
  });
  test("writeCritestSection replaces only the critest section", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-benchtest-report-"));
    try {
      const file = path.join(dir, "REPORT.md");
      await writeFile(file, `# r\n\nresults\n\n## critest -benchmark\n\n${CRITEST_BEGIN}\nold\n${CRITEST_END}\n\ntail\n`);
      await writeCritestSection(file, "new figures\n");
      assert.equal(await readFile(file, "utf8"), `# r\n\nresults\n\n## critest -benchmark\n\n${CRITEST_BEGIN}\nnew figures\n${CRITEST_END}\n\ntail\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("generated configs", () => {
  const o = { root: "/t/r", state: "/t/s", socket: "/t/c.sock", cniConfDir: "/t/cni", runcRoot: "/t/runc", registryHost: "127.0.0.1:5000", pauseImage: "127.0.0.1:5000/bench/pause:1" };
  test("containerd's config.toml: private paths, CRI settings this machine needs, http mirror", () => {
    const c = parse(containerdConfig(o)) as Record<string, any>;
    assert.equal(c.version, 2);
    assert.equal(c.root, "/t/r");
    assert.equal(c.state, "/t/s");
    assert.equal(c.grpc.address, "/t/c.sock");
    const cri = c.plugins["io.containerd.grpc.v1.cri"];
    assert.equal(cri.restrict_oom_score_adj, true);
    assert.equal(cri.sandbox_image, o.pauseImage);
    assert.equal(cri.netns_mounts_under_state_dir, true);
    assert.equal(cri.cni.bin_dir, "/usr/lib/cni");
    assert.equal(cri.cni.conf_dir, "/t/cni");
    assert.equal(cri.containerd.snapshotter, "overlayfs");
    assert.equal(cri.containerd.runtimes.runc.runtime_type, "io.containerd.runc.v2");
    assert.equal(cri.containerd.runtimes.runc.options.Root, "/t/runc");
    assert.deepEqual(cri.registry.mirrors["127.0.0.1:5000"].endpoint, ["http://127.0.0.1:5000"]);
  });
  test("berthd accepts its generated config", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-benchtest-cfg-"));
    try {
      const file = path.join(dir, "berth.toml");
      await writeFile(file, berthConfig(o));
      const { config } = await loadConfig({ config: file });
      assert.equal(config.socket, "/t/c.sock");
      assert.equal(config.cni.conf_dir, "/t/cni");
      assert.equal(config.image.pause_image, o.pauseImage);
      assert.equal(config.runtime.restrict_oom_score_adj, true);
      assert.ok(config.image.insecure_registries.includes("127.0.0.1:5000"));
      assert.equal(config.runtime.handlers.runc!.root, "/t/runc");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  test("both networks share one conflist shape on their own bridge and subnet", () => {
    const b = JSON.parse(conflist(NETWORKS.berth, "/t/ipam-b"));
    const c = JSON.parse(conflist(NETWORKS.containerd, "/t/ipam-c"));
    assert.equal(b.plugins[0].bridge, "bbench0");
    assert.equal(c.plugins[0].bridge, "bbench1");
    assert.deepEqual(b.plugins[0].ipam.ranges, [[{ subnet: "10.92.0.0/24" }]]);
    assert.deepEqual(c.plugins[0].ipam.ranges, [[{ subnet: "10.92.1.0/24" }]]);
    const shape = (x: { plugins: Array<{ type: string }> }) => x.plugins.map((p) => p.type);
    assert.deepEqual(shape(b), shape(c));
  });
});

describe("cleanup parsing", () => {
  test("mountsUnder: longest first, only under the dir, octal escapes decoded", () => {
    const info = [
      "36 25 0:32 / /tmp/berth-bench-x/containerd/state/netns/cni-1 rw - nsfs nsfs rw",
      "37 25 0:33 / /tmp/berth-bench-x/berth/root/overlay\\040dir/merged rw - overlay overlay rw",
      "38 25 0:34 / /tmp/berth-bench-xyz/other rw - tmpfs tmpfs rw",
      "39 25 0:35 / /tmp/berth-bench-x rw - tmpfs tmpfs rw",
    ].join("\n");
    // Longer paths first: a mount always comes before the one it sits on.
    assert.deepEqual(mountsUnder(info, "/tmp/berth-bench-x"), [
      "/tmp/berth-bench-x/berth/root/overlay dir/merged",
      "/tmp/berth-bench-x/containerd/state/netns/cni-1",
      "/tmp/berth-bench-x",
    ]);
  });
  test("splitShellish honours quotes and escaped quotes", () => {
    assert.deepEqual(splitShellish(`POSTROUTING -s 10.92.0.2/32 -m comment --comment "name: \\"berth-bench-b\\" id: \\"abc\\"" -j CNI-123`), [
      "POSTROUTING", "-s", "10.92.0.2/32", "-m", "comment", "--comment", `name: "berth-bench-b" id: "abc"`, "-j", "CNI-123",
    ]);
  });
  test("benchIptablesRules finds only the benchmark networks' rules and their chains", () => {
    const save = [
      "*nat",
      ":CNI-123 - [0:0]",
      `-A POSTROUTING -s 10.92.0.2/32 -m comment --comment "name: \\"berth-bench-b\\" id: \\"abc\\"" -j CNI-123`,
      `-A CNI-123 -d 10.92.0.0/24 -m comment --comment "name: \\"berth-bench-b\\" id: \\"abc\\"" -j ACCEPT`,
      `-A POSTROUTING -s 10.88.0.2/32 -m comment --comment "name: \\"berth\\" id: \\"def\\"" -j CNI-456`,
      "COMMIT",
    ].join("\n");
    const { deletes, chains } = benchIptablesRules(save, ["berth-bench-b", "berth-bench-c"]);
    assert.equal(deletes.length, 2);
    assert.deepEqual(deletes[0]!.slice(0, 2), ["-D", "POSTROUTING"]);
    assert.deepEqual(chains, ["CNI-123"]);
    assert.ok(!chains.includes("CNI-456"));
  });
});

describe("CRI-O and the steady-state rows", () => {
  test("CRI-O's config: cgroupfs, conmon and runc given, private paths, no infra container, TOML that parses", () => {
    const text = crioConfig({ dir: "/tmp/b/crio", socket: "/tmp/b/crio/crio.sock", cniConfDir: "/tmp/b/crio/cni", runcRoot: "/tmp/b/crio/runc", pinns: "/x/pinns", runc: "/usr/sbin/runc", conmon: "/usr/bin/conmon", pauseImage: "127.0.0.1:5000/bench/pause:1" });
    const c = parse(text) as { crio: { root: string; runroot: string; api: { listen: string }; runtime: { cgroup_manager: string; drop_infra_ctr: boolean; pinns_path: string; runtimes: { runc: { runtime_path: string; monitor_path: string; runtime_root: string } } }; network: { network_dir: string } } };
    assert.equal(c.crio.runtime.cgroup_manager, "cgroupfs");
    assert.equal(c.crio.runtime.drop_infra_ctr, true);
    assert.equal(c.crio.runtime.runtimes.runc.monitor_path, "/usr/bin/conmon");
    assert.equal(c.crio.runtime.runtimes.runc.runtime_root, "/tmp/b/crio/runc");
    for (const p of [c.crio.root, c.crio.runroot, c.crio.api.listen, c.crio.network.network_dir]) assert.ok(p.startsWith("/tmp/b/crio/"), p);
  });

  test("CRI-O's registries drop-in: the local registry over http, docker.io and registry.k8s.io mirrored to it", () => {
    const r = parse(crioRegistries("127.0.0.1:5000")) as { registry: Array<{ location: string; insecure?: boolean; mirror?: Array<{ location: string; insecure: boolean }> }> };
    assert.deepEqual(r.registry.map((x) => x.location), ["127.0.0.1:5000", "docker.io", "registry.k8s.io"]);
    assert.equal(r.registry[0]!.insecure, true);
    for (const x of r.registry.slice(1)) assert.deepEqual(x.mirror?.map((m) => ({ ...m })), [{ location: "127.0.0.1:5000", insecure: true }]);
  });

  test("a CRI-O column appears only when a group has CRI-O figures; goals compare berth with the faster peer", () => {
    const row = newRow("steady-30-cpu", "daemon CPU");
    row.samples.berth.push(8);
    row.samples.containerd.push(20);
    const two = groupTable(newGroup("g", "m", [row]));
    assert.ok(!two.includes("CRI-O"));
    row.samples.crio.push(16);
    const three = groupTable(newGroup("g", "m", [row]));
    assert.match(three, /\| berth median \| containerd median \| CRI-O median \| berth \/ containerd \| berth \/ CRI-O \|/);
    assert.match(three, /\| daemon CPU \| 8\.00 ms \| 20\.0 ms \| 16\.0 ms \| 0\.40 \| 0\.50 \|/);
    const g = goals([newGroup("g", "m", [row])]).find((x) => x.text.startsWith("daemon CPU"))!;
    assert.equal(g.value, 0.5);
    assert.equal(g.limit, 0.8);
  });
});

describe("the steady-state poll's schedule", () => {
  // A stand-in for a runtime's CRI client (no daemon): this checks the schedule, not a runtime.
  function counting() {
    const calls: string[] = [];
    const answer = <T>(name: string, value: T) => async () => (calls.push(name), value);
    const rt = {
      cri: {
        runtime: {
          listPodSandbox: answer("ListPodSandbox", { items: [] }),
          listContainers: answer("ListContainers", { containers: [] }),
          status: answer("Status", { status: { conditions: [] } }),
          listContainerStats: answer("ListContainerStats", { stats: [] }),
          listPodSandboxStats: answer("ListPodSandboxStats", { stats: [] }),
        },
        image: { imageFsInfo: answer("ImageFsInfo", { imageFilesystems: [] }) },
      },
    } as unknown as RuntimeUnderTest;
    return { rt, calls };
  }

  test("second 0 sends all six calls, the next seconds the every-second ones; with or without a listener for their times", async () => {
    for (const listen of [false, true]) {
      const { rt, calls } = counting();
      const timed: string[] = [];
      const t0 = performance.now();
      await pollOnSchedule(rt, 2, () => false, listen ? (call) => timed.push(call) : undefined);
      assert.ok(performance.now() - t0 >= 1990, "the last second is waited out");
      assert.deepEqual(calls, ["ListPodSandbox", "ListContainers", "Status", "ListContainerStats", "ListPodSandboxStats", "ImageFsInfo", "ListPodSandbox", "ListContainers"]);
      assert.deepEqual(timed, listen ? calls : []);
    }
  });
});
