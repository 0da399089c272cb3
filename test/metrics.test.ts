// Pod metrics (ListMetricDescriptors, ListPodSandboxMetrics, StreamPodSandboxMetrics) from a real
// container that burns CPU, fills memory, writes to its layer and pings its gateway; berthd's
// Prometheus endpoint scraped by a real Prometheus server and checked by promtool; pull progress
// through a registry slowed by a throttling proxy.
// Resources: bridge bm1, 10.205.1.0/24, cgroup parent /berth-test-metrics.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { collect } from "../src/cri/client.js";
import type { Metric, PodSandboxMetrics } from "../src/gen/api.js";
import { MetricType } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { freePort, startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bm1";
const SUBNET = "10.205.1.0/24";
const GATEWAY = "10.205.1.1";
const CGROUP_PARENT = "/berth-test-metrics";
const APPLETS = ["sh", "sleep", "true", "dd", "ping", "timeout", "cat", "rm", "head", "tr"];

/** The names the next cri-tools conformance spec expects (issue #16). */
const EXPECTED = `container_blkio_device_usage_total container_cpu_cfs_periods_total container_cpu_cfs_throttled_periods_total
container_cpu_cfs_throttled_seconds_total container_cpu_system_seconds_total container_cpu_usage_seconds_total
container_cpu_user_seconds_total container_file_descriptors container_fs_inodes_free container_fs_inodes_total
container_fs_limit_bytes container_fs_reads_bytes_total container_fs_reads_total container_fs_usage_bytes
container_fs_writes_bytes_total container_fs_writes_total container_hugetlb_max_usage_bytes container_hugetlb_usage_bytes
container_last_seen container_memory_cache container_memory_failcnt container_memory_failures_total
container_memory_kernel_usage container_memory_mapped_file container_memory_max_usage_bytes container_memory_rss
container_memory_swap container_memory_usage_bytes container_memory_working_set_bytes container_network_receive_bytes_total
container_network_receive_errors_total container_network_receive_packets_dropped_total container_network_receive_packets_total
container_network_transmit_bytes_total container_network_transmit_errors_total container_network_transmit_packets_dropped_total
container_network_transmit_packets_total container_oom_events_total container_pressure_cpu_stalled_seconds_total
container_pressure_cpu_waiting_seconds_total container_pressure_io_stalled_seconds_total container_pressure_io_waiting_seconds_total
container_pressure_memory_stalled_seconds_total container_pressure_memory_waiting_seconds_total container_processes
container_sockets container_spec_cpu_period container_spec_cpu_quota container_spec_cpu_shares container_spec_memory_limit_bytes
container_spec_memory_reservation_limit_bytes container_spec_memory_swap_limit_bytes container_start_time_seconds
container_threads container_threads_max container_ulimits_soft`.split(/\s+/);

/** cAdvisor's counters: the _total names but one (a gauge), and the memory failcnt. */
const COUNTERS = new Set([...EXPECTED.filter((n) => n.endsWith("_total") && n !== "container_fs_inodes_total"), "container_memory_failcnt"]);

const exists = (p: string) => access(p).then(() => true, () => false);
const V2_HOST = await exists("/sys/fs/cgroup/cgroup.controllers");

/** Every series of one pod, pod-level and per container, keyed by name. */
function seriesOf(p: PodSandboxMetrics): Map<string, Metric[]> {
  const out = new Map<string, Metric[]>();
  for (const m of [...p.metrics, ...p.containerMetrics.flatMap((c) => c.metrics)]) out.set(m.name, [...(out.get(m.name) ?? []), m]);
  return out;
}

/** The value of the one series of `name` whose labels include these (key -> value). */
function value(series: Map<string, Metric[]>, keys: Map<string, string[]>, name: string, labels: Record<string, string> = {}): bigint {
  const ks = keys.get(name)!;
  const hits = (series.get(name) ?? []).filter((m) => Object.entries(labels).every(([k, v]) => m.labelValues[ks.indexOf(k)] === v));
  assert.equal(hits.length, 1, `${name}${JSON.stringify(labels)}: ${hits.length} series`);
  return hits[0]!.value!.value;
}

function get(url: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers["content-type"]) }));
    }).on("error", reject);
  });
}

/** An HTTP proxy to the registry that sends blob bodies at `bytesPerSecond` (a slow registry link). */
async function throttlingProxy(target: string, bytesPerSecond: number): Promise<{ host: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      if (!req.url?.includes("/blobs/")) return void r.pipe(res);
      const tick = 100;
      const perTick = Math.max(1, Math.floor((bytesPerSecond * tick) / 1000));
      let pending = Buffer.alloc(0);
      let ended = false;
      r.on("data", (c: Buffer) => (pending = Buffer.concat([pending, c])));
      r.on("end", () => (ended = true));
      const t = setInterval(() => {
        const chunk = pending.subarray(0, perTick);
        pending = pending.subarray(chunk.length);
        if (chunk.length) res.write(chunk);
        if (ended && pending.length === 0) {
          clearInterval(t);
          res.end();
        }
      }, tick);
      res.on("close", () => clearInterval(t));
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return { host: `127.0.0.1:${port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

describe("metrics", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let metricsUrl: string;
  let podId: string;
  let ctrId: string;
  let keys: Map<string, string[]>;
  const v1 = !V2_HOST;

  before(async () => {
    reg = await startRegistry();
    await pushImage(reg, "metrics/busybox", { layers: [{ entries: await busyboxEntries(APPLETS) }], config: { Cmd: ["sleep", "3600"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/metrics/busybox:1`;
    const port = await freePort();
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    d = await startBerthd({ config: `[cni]\nplugin_timeout = "20s"\n[image]\npull_progress_interval = "300ms"\n[metrics]\naddress = "127.0.0.1:${port}"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    await d.cri.image.pullImage({ image: { image } });
    const cfg = podConfig("metrics", { linux: { cgroupParent: CGROUP_PARENT } });
    podId = (await d.cri.runtime.runPodSandbox({ config: cfg as never })).podSandboxId;
    ({ containerId: ctrId } = await d.cri.runtime.createContainer({
      podSandboxId: podId,
      sandboxConfig: cfg as never,
      config: {
        metadata: { name: "worker" }, image: { image }, logPath: "worker.log",
        linux: { resources: { cpuPeriod: 100000n, cpuQuota: 150000n, cpuShares: 512n, memoryLimitInBytes: 256n << 20n } },
      } as never,
    }));
    await d.cri.runtime.startContainer({ containerId: ctrId });
    keys = new Map((await d.cri.runtime.listMetricDescriptors({})).descriptors.map((x) => [x.name, x.labelKeys]));
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const podMetrics = async () => {
    const all = (await d.cri.runtime.listPodSandboxMetrics({})).podMetrics;
    const p = all.find((x) => x.podSandboxId === podId);
    assert.ok(p, `pod ${podId} in ListPodSandboxMetrics`);
    return p;
  };

  test("the descriptors are cAdvisor's, with help and label keys", async () => {
    const descs = (await d.cri.runtime.listMetricDescriptors({})).descriptors;
    assert.deepEqual(descs.map((x) => x.name).sort(), [...EXPECTED].sort());
    for (const x of descs) {
      assert.ok(x.help.length > 10, `${x.name} has help`);
      assert.deepEqual(x.labelKeys.slice(0, 6), ["id", "name", "image", "container", "pod", "namespace"]);
    }
    assert.deepEqual(keys.get("container_network_receive_bytes_total")!.slice(6), ["interface"]);
    assert.deepEqual(keys.get("container_blkio_device_usage_total")!.slice(6), ["device", "major", "minor", "operation"]);
    assert.equal(descs.find((x) => x.name === "container_cpu_cfs_periods_total")!.help, "Number of elapsed enforcement period intervals.");
  });

  test("every descriptor has series with its labels (pressure needs cgroup v2, hugetlb its controller)", async () => {
    const p = await podMetrics();
    const series = seriesOf(p);
    const hugetlb = await exists(v1 ? "/sys/fs/cgroup/hugetlb" : "/sys/fs/cgroup/cgroup.controllers");
    for (const name of EXPECTED) {
      const absent = (name.startsWith("container_pressure_") && v1) || (name.startsWith("container_hugetlb_") && !hugetlb);
      const got = series.get(name) ?? [];
      if (absent) {
        assert.equal(got.length, 0, `${name} is not measurable here`);
        continue;
      }
      assert.ok(got.length > 0, `${name} has a series`);
      for (const m of got) {
        assert.equal(m.labelValues.length, keys.get(name)!.length, `${name} label values match its keys`);
        assert.ok(m.timestamp > 0n && m.value !== undefined);
        assert.equal(m.metricType, COUNTERS.has(name) ? MetricType.COUNTER : MetricType.GAUGE, `${name} type`);
      }
    }
    const c = p.containerMetrics.find((x) => x.containerId === ctrId)!;
    const usage = c.metrics.find((m) => m.name === "container_memory_usage_bytes")!;
    assert.deepEqual(usage.labelValues.slice(0, 1).concat(usage.labelValues.slice(3)), [ctrId, "worker", "metrics", "berth-test"]);
    assert.equal(usage.labelValues[2], image);
    assert.equal(value(series, keys, "container_spec_cpu_quota"), 150000n);
    assert.equal(value(series, keys, "container_spec_cpu_period"), 100000n);
    assert.equal(value(series, keys, "container_spec_cpu_shares"), 512n);
    assert.equal(value(series, keys, "container_spec_memory_limit_bytes"), 256n << 20n);
    assert.equal(value(series, keys, "container_processes"), 1n);
    assert.ok(value(series, keys, "container_ulimits_soft", { ulimit: "max_open_files" }) > 0n);
    const net = p.metrics.find((m) => m.name === "container_network_receive_bytes_total")!;
    assert.equal(net.labelValues[keys.get(net.name)!.indexOf("interface")], "eth0");
  });

  test("values move with CPU, memory, layer writes and traffic", async () => {
    const before = seriesOf(await podMetrics());
    const exec = async (cmd: string) => {
      const r = await d.cri.runtime.execSync({ containerId: ctrId, cmd: ["sh", "-c", cmd], timeout: 30n });
      assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr.toString()}`);
    };
    await exec("timeout 2 sh -c 'while :; do :; done' || true");
    await exec("dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 2>/dev/null");
    await exec("dd if=/dev/zero of=/layer-file bs=1M count=8 oflag=direct 2>/dev/null");
    await exec(`ping -c 3 -W 2 ${GATEWAY} >/dev/null`);
    const after_ = seriesOf(await podMetrics());
    const grew = (name: string, by: bigint, labels: Record<string, string> = {}) => {
      const a = value(before, keys, name, labels);
      const b = value(after_, keys, name, labels);
      assert.ok(b - a >= by, `${name}${JSON.stringify(labels)} grew by ${b - a}, want >= ${by}`);
    };
    grew("container_cpu_usage_seconds_total", 1n, { cpu: "total" });
    grew("container_cpu_cfs_periods_total", 10n);
    grew("container_memory_usage_bytes", 30n << 20n);
    grew("container_memory_cache", 30n << 20n);
    // The peak moves with the fill, by less than it when the cgroup had peaked above its current usage before.
    grew("container_memory_max_usage_bytes", 1n);
    assert.ok(value(after_, keys, "container_memory_max_usage_bytes") >= value(after_, keys, "container_memory_usage_bytes"));
    grew("container_memory_failures_total", 1n, { failure_type: "pgfault", scope: "container" });
    grew("container_fs_usage_bytes", 8n << 20n);
    if (V2_HOST) {
      grew("container_fs_writes_bytes_total", 8n << 20n);
      grew("container_fs_writes_total", 1n);
    } else {
      // v1's blkio.throttle counters stay at 0 on this kernel even for O_DIRECT writes: the metric must say what the kernel says.
      const blkio = await readFile(`/sys/fs/cgroup/blkio${CGROUP_PARENT}/berth-${ctrId}/blkio.throttle.io_service_bytes_recursive`, "utf8");
      const dev = keys.get("container_blkio_device_usage_total")!;
      for (const m of after_.get("container_blkio_device_usage_total")!) {
        const [maj, min, op] = [m.labelValues[dev.indexOf("major")], m.labelValues[dev.indexOf("minor")], m.labelValues[dev.indexOf("operation")]];
        const line = new RegExp(`^${maj}:${min} ${op} (\\d+)$`, "m").exec(blkio);
        assert.equal(m.value!.value, BigInt(line?.[1] ?? "0"), `blkio ${maj}:${min} ${op}`);
      }
    }
    grew("container_network_transmit_packets_total", 3n, { interface: "eth0" });
    grew("container_network_receive_packets_total", 3n, { interface: "eth0" });
    grew("container_network_transmit_bytes_total", 3n * 84n, { interface: "eth0" });
    await exec("rm /dev/shm/fill /layer-file");
  });

  test("StreamPodSandboxMetrics sends the same pods and series", async () => {
    const unary = await podMetrics();
    const streamed: PodSandboxMetrics[] = [];
    for (const msg of await collect(d.cri.runtimeStreams.streamPodSandboxMetrics({}))) streamed.push(...msg.podSandboxMetrics);
    const p = streamed.find((x) => x.podSandboxId === podId);
    assert.ok(p);
    const names = (x: PodSandboxMetrics) => [...seriesOf(x).keys()].sort();
    assert.deepEqual(names(p), names(unary));
    // A stream cancelled at once ends with CANCELLED on the client, and berthd goes on answering.
    const cancelled = d.cri.runtimeStreams.streamPodSandboxMetrics({});
    cancelled.cancel();
    await assert.rejects(collect(cancelled), /CANCELLED|Cancelled/i);
    assert.ok((await podMetrics()).containerMetrics.length > 0);
  });

  test("/metrics: RPC counts, errors by code, latency, containers, Node's process metrics; promtool accepts it", async () => {
    await d.cri.runtime.version({});
    await assert.rejects(d.cri.runtime.podSandboxStatus({ podSandboxId: "no-such-pod" }));
    const r = await get(metricsUrl);
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    const text = r.body;
    for (const want of [
      /^berth_cri_requests_total\{method="Version"\} [1-9]/m,
      /^berth_cri_request_errors_total\{method="PodSandboxStatus",code="NOT_FOUND"\} 1$/m,
      /^berth_cri_request_duration_seconds_bucket\{le="\+Inf",method="RunPodSandbox"\} 1$/m,
      /^berth_cni_plugin_duration_seconds_count\{plugin="bridge",command="ADD"\} 1$/m,
      /^berth_containers\{state="running"\} 1$/m,
      /^berth_pod_sandboxes\{state="ready"\} 1$/m,
      /^berth_monitor_processes 1$/m,
      /^berth_image_pull_bytes_total [1-9]/m,
      /^berth_image_layers_pulled_total 1$/m,
      /^berth_image_pull_duration_seconds_count\{result="ok"\} 1$/m,
      /^berth_nodejs_heap_size_used_bytes [1-9]/m,
      /^berth_nodejs_eventloop_lag_seconds /m,
      /^berth_nodejs_gc_duration_seconds_count\{kind="/m,
      /^berth_nodejs_active_resources\{type="/m,
      /^berth_event_subscribers 0$/m,
      /^berth_events_dropped_total \d+$/m,
    ]) assert.match(text, want);
    const promtool = await sh("promtool", ["check", "metrics"], { input: text });
    assert.equal(promtool.code, 0, `promtool check metrics: ${promtool.stdout}${promtool.stderr}`);
    assert.equal((await get(metricsUrl.replace("/metrics", "/other"))).status, 404);
  });

  test("a second berthd on a taken metrics port serves the CRI and says why it has no endpoint", async () => {
    const other = await startBerthd({ config: `[metrics]\naddress = "${new URL(metricsUrl).host}"\n` });
    try {
      assert.equal((await other.cri.runtime.version({})).runtimeName, "berth");
      assert.match(other.logs(), /metrics endpoint not started \(metrics\.address\)/);
      assert.match(other.logs(), /EADDRINUSE/);
    } finally {
      await other.cleanup();
    }
  });

  test("a real Prometheus server scrapes berthd and answers queries on berth's series", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-prom-"));
    const port = await freePort();
    await writeFile(path.join(dir, "prometheus.yml"), [
      "global:", "  scrape_interval: 1s", "scrape_configs:", "  - job_name: berthd", "    static_configs:",
      `      - targets: ["${new URL(metricsUrl).host}"]`, "",
    ].join("\n"));
    let out = "";
    const prom: ChildProcess = spawn("prometheus", [
      `--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`, "--storage.tsdb.retention.time=1h",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    prom.stdout!.on("data", (b: Buffer) => (out += b));
    prom.stderr!.on("data", (b: Buffer) => (out += b));
    try {
      const query = async (q: string) => {
        const r = await get(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
        if (r.status !== 200) return undefined;
        const res = (JSON.parse(r.body) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }).data.result;
        return res.length > 0 ? res : undefined;
      };
      const up = await waitFor("Prometheus scraping berthd", () => query('up{job="berthd"} == 1'), 30_000, 500).catch((err) => {
        throw new Error(`${String(err)}\n${out.slice(-2000)}`);
      });
      assert.equal(up[0]!.metric.instance, new URL(metricsUrl).host);
      const calls = await waitFor("berth_cri_requests_total in Prometheus", () => query('berth_cri_requests_total{method="ListMetricDescriptors"}'), 15_000, 500);
      assert.ok(Number(calls[0]!.value[1]) >= 1);
      const running = await waitFor("berth_containers in Prometheus", () => query('berth_containers{state="running"}'), 15_000, 500);
      assert.equal(running[0]!.value[1], "1");
    } finally {
      prom.kill("SIGTERM");
      await new Promise((r) => prom.once("exit", r));
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a slow pull logs its progress per layer and shows it as gauges", async () => {
    const layer = randomBytes(600 * 1024);
    const pushed = await pushImage(reg, "metrics/big", { layers: [{ entries: [{ path: "big.bin", content: layer }] }] }, ["1"]);
    const proxy = await throttlingProxy(reg.url, 200 * 1024);
    try {
      const ref = `${proxy.host}/metrics/big:1`;
      const logStart = d.logs().length;
      const pulling = d.cri.image.pullImage({ image: { image: ref } });
      const gauge = await waitFor("a progress gauge mid-pull", async () => {
        const m = /^berth_image_pull_layer_received_bytes\{image="([^"]+)",layer="([^"]+)"\} (\d+)$/m.exec((await get(metricsUrl)).body);
        return m && Number(m[3]) > 0 ? m : undefined;
      }, 10_000, 100);
      assert.equal(gauge[1], ref);
      assert.equal(gauge[2], pushed.layerDigests[0]);
      assert.match((await get(metricsUrl)).body, /^berth_image_pulls_in_progress 1$/m);
      await pulling;
      const lines = d.logs().slice(logStart).split("\n").filter((l) => l.includes('"pull progress"') && l.includes(ref));
      assert.ok(lines.length >= 2, `progress lines: ${lines.length}`);
      const first = JSON.parse(lines[0]!) as { done: number; total: number; layers: string[] };
      assert.ok(first.total > layer.length, `total ${first.total} is the compressed layer's size`);
      assert.ok(first.done < first.total);
      assert.match(first.layers[0]!, new RegExp(`^${pushed.layerDigests[0]!.slice(7, 19)} \\d+/${first.total}$`));
      const after = (await get(metricsUrl)).body;
      assert.match(after, /^berth_image_pulls_in_progress 0$/m);
      assert.doesNotMatch(after, /berth_image_pull_layer_received_bytes\{/);
    } finally {
      await proxy.close();
    }
  });

  test("an OOM-killed container and a failed pull are counted", async () => {
    const cfg = (await d.cri.runtime.podSandboxStatus({ podSandboxId: podId })).status!;
    const { containerId } = await d.cri.runtime.createContainer({
      podSandboxId: podId,
      sandboxConfig: podConfig("metrics", { metadata: cfg.metadata, linux: { cgroupParent: CGROUP_PARENT } }) as never,
      config: {
        metadata: { name: "hog" }, image: { image }, logPath: "hog.log",
        command: ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); sleep 5"],
        linux: { resources: { memoryLimitInBytes: 32n << 20n } },
      } as never,
    });
    await d.cri.runtime.startContainer({ containerId });
    const st = await waitFor("the hog to be OOM-killed", async () => {
      const s = (await d.cri.runtime.containerStatus({ containerId })).status!;
      return s.finishedAt > 0n ? s : undefined;
    }, 30_000, 200);
    assert.equal(st.reason, "OOMKilled");
    assert.match((await get(metricsUrl)).body, /^berth_container_oom_kills_total 1$/m);
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/metrics/no-such-image:1` } }));
    assert.match((await get(metricsUrl)).body, /^berth_image_pull_failures_total\{reason="NOT_FOUND"\} 1$/m);
    await d.cri.runtime.removeContainer({ containerId });
  });
});

