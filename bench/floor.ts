// The per-call floor (bench/REPORT.md, "Per-call floor"): what a call costs the client when the
// server does no work at all. berthd and containerd get the same pods and containers; a bare
// server then answers each call with berthd's own answer, pre-encoded, through berth's own gRPC
// stack (src/grpc/server.ts) and nothing else. One grpc-js client per server, the servers taking
// turns call by call; each call's median over `--calls` turns after 20 warm-up turns.
// berth's latency minus the bare server's is what berthd's handler adds; the bare server against
// containerd is the lowest ratio any server sending berth's answers can reach. Then the same for
// kubelet's second-0 poll burst (bench/workloads.ts POLL, in order, 300 ms between bursts), the
// stats lists and ImageFsInfo answered from berthd's answers too, and a fourth server that
// answers like the bare one but first reads berthd's containers' cgroups for the two stats lists,
// through berthd's own reader and as berthd's stats lists ask it: the floor of a runtime that
// reads the kernel's counters when asked, as all three do.
//
//   node dist/bench/floor.js [--pods 20] [--per-pod 5] [--calls 300] [--berthd PATH (default bin/berthd)]
//
// Needs root. The bare servers run as children of this script (--serve SOCKET ANSWERS_FILE [--reads]).
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { openCgroups, type Cgroups } from "../src/runtime/cgroups.js";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connectCri, type CriClient } from "../src/cri/client.js";
import { ContainerStatusResponse, ImageFsInfoResponse, ImageServiceService, ListContainerStatsResponse, ListContainersResponse, ListPodSandboxResponse, ListPodSandboxStatsResponse, PodSandboxStatusResponse, RuntimeServiceService, StatusResponse, VersionResponse } from "../src/gen/api.js";
import { GrpcServer, methodTable, type Call } from "../src/grpc/server.js";
import { startRegistry, type TestRegistry } from "../test/harness/registry.js";
import { removeEverything, sweepHost } from "./cleanup.js";
import { buildBenchImages } from "./images.js";
import { startBerth, startContainerd, type RuntimeUnderTest } from "./runtimes.js";
import { createStart, POLL, pullImage, runPod, type Pod } from "./workloads.js";

const log = (m: string) => process.stderr.write(`[floor] ${m}\n`);
const t = { timeoutMs: 30_000 };

/** What berthd's stats lists read of each container's cgroup, through berthd's own reader (runtime/stats.ts: the memory limit is reused between polls, no OOM count; the process count for the pods' list). */
function readCgroups(cgroups: Cgroups, paths: string[], pods: boolean): void {
  for (const p of paths) cgroups.stats(p, { pids: pods, oomKills: false, memoryLimit: false });
}

/**
 * The bare server: each method answers its pre-encoded bytes (base64 in the answers file); with
 * `reads`, the two stats lists first read the containers' cgroup files (the answers file's `cgroupsPaths`).
 */
async function serve(socket: string, answersFile: string, reads: boolean): Promise<void> {
  const { cgroupsPaths, ...answers } = JSON.parse(await readFile(answersFile, "utf8")) as Record<string, string> & { cgroupsPaths: string[] };
  const cgroups = reads ? await openCgroups("cgroupfs") : undefined;
  const services = ([["RuntimeService", RuntimeServiceService], ["ImageService", ImageServiceService]] as const).map(([service, methods]) => {
    const definition: Record<string, unknown> = {};
    const handlers: Record<string, (call: Call) => void> = {};
    for (const [method, b64] of Object.entries(answers)) {
      if (!(method in methods)) continue;
      const bytes = Buffer.from(b64, "base64");
      definition[method] = { ...(methods as Record<string, object>)[method], responseSerialize: (b: Buffer) => b };
      const statsList = method === "listContainerStats" || method === "listPodSandboxStats";
      handlers[method] = cgroups && statsList
        ? (call) => {
          readCgroups(cgroups, cgroupsPaths, method === "listPodSandboxStats");
          call.reply(bytes);
        }
        : (call) => call.reply(bytes);
    }
    return { service, definition: definition as never, handlers };
  });
  const server = new GrpcServer(methodTable(services));
  const listener = net.createServer((c) => server.serve(c));
  await new Promise<void>((resolve) => listener.listen(socket, resolve));
  process.stdout.write("serving\n");
}

interface Target {
  name: string;
  cri: CriClient;
  /** What the poll's calls (POLL) take: only the client. */
  rt: RuntimeUnderTest;
  containers: string[];
  pods: Pod[];
}

const CALLS: Array<{ name: string; run: (s: Target, i: number) => Promise<unknown> }> = [
  { name: "ListContainers", run: (s) => s.cri.runtime.listContainers({}, t) },
  { name: "ListPodSandbox", run: (s) => s.cri.runtime.listPodSandbox({}, t) },
  { name: "ContainerStatus", run: (s, i) => s.cri.runtime.containerStatus({ containerId: s.containers[i % s.containers.length]! }, t) },
  { name: "PodSandboxStatus", run: (s, i) => s.cri.runtime.podSandboxStatus({ podSandboxId: s.pods[i % s.pods.length]!.id }, t) },
  { name: "Status", run: (s) => s.cri.runtime.status({}, t) },
  { name: "Version", run: (s) => s.cri.runtime.version({}, t) },
];

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: "string" }, "per-pod": { type: "string" }, calls: { type: "string" }, berthd: { type: "string" } } });
  const nPods = Number(values.pods ?? 20);
  const perPod = Number(values["per-pod"] ?? 5);
  const nCalls = Number(values.calls ?? 300);
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-bench-floor-"));
  await chmod(dir, 0o711);
  let registry: TestRegistry | undefined;
  const rts: RuntimeUnderTest[] = [];
  const bares: ChildProcess[] = [];
  const bareClients: CriClient[] = [];
  try {
    registry = await startRegistry();
    const images = await buildBenchImages(registry, path.join(dir, "images"));
    const opts = { dir, registryHost: registry.host, pauseImage: images.pause };
    rts.push(await startBerth(opts, values.berthd ?? path.resolve(fileURLToPath(import.meta.url), "../../../bin/berthd")), await startContainerd(opts));
    const targets: Target[] = [];
    for (const rt of rts) {
      await pullImage(rt.cri, images.busybox);
      const target: Target = { name: rt.name, cri: rt.cri, rt, containers: [], pods: [] };
      log(`${rt.name}: ${nPods} pods x ${perPod}`);
      for (let i = 0; i < nPods; i++) {
        const pod = await runPod(rt, `floor-${i}`);
        target.pods.push(pod);
        for (let k = 0; k < perPod; k++) target.containers.push(await createStart(rt, pod, images.busybox, `c${k}`));
      }
      targets.push(target);
    }
    // berthd's own answers, as the bare server will send them.
    const b = targets[0]!;
    const enc = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
    const answers = {
      listContainers: enc(ListContainersResponse.encode(await b.cri.runtime.listContainers({}, t)).finish()),
      listPodSandbox: enc(ListPodSandboxResponse.encode(await b.cri.runtime.listPodSandbox({}, t)).finish()),
      containerStatus: enc(ContainerStatusResponse.encode(await b.cri.runtime.containerStatus({ containerId: b.containers[0]! }, t)).finish()),
      podSandboxStatus: enc(PodSandboxStatusResponse.encode(await b.cri.runtime.podSandboxStatus({ podSandboxId: b.pods[0]!.id }, t)).finish()),
      status: enc(StatusResponse.encode(await b.cri.runtime.status({}, t)).finish()),
      version: enc(VersionResponse.encode(await b.cri.runtime.version({}, t)).finish()),
      listContainerStats: enc(ListContainerStatsResponse.encode(await b.cri.runtime.listContainerStats({ filter: {} }, t)).finish()),
      listPodSandboxStats: enc(ListPodSandboxStatsResponse.encode(await b.cri.runtime.listPodSandboxStats({ filter: {} }, t)).finish()),
      imageFsInfo: enc(ImageFsInfoResponse.encode(await b.cri.image.imageFsInfo({}, t)).finish()),
    };
    // The containers' cgroups, from berthd's verbose status, for the bare server that reads them.
    const cgroupsPaths: string[] = [];
    for (const id of b.containers) {
      const { info } = await b.cri.runtime.containerStatus({ containerId: id, verbose: true }, t);
      cgroupsPaths.push((JSON.parse(info.info ?? "{}") as { cgroupsPath: string }).cgroupsPath);
    }
    const answersFile = path.join(dir, "answers.json");
    await writeFile(answersFile, JSON.stringify({ ...answers, cgroupsPaths }));
    const bareTarget = async (name: string, reads: boolean): Promise<Target> => {
      const socket = path.join(dir, `${name}.sock`);
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--serve", socket, answersFile, ...(reads ? ["--reads"] : [])], { stdio: ["ignore", "pipe", "inherit"] });
      bares.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d: Buffer) => String(d).includes("serving") && resolve());
        child.once("exit", (code) => reject(new Error(`the ${name} server exited (${code})`)));
      });
      const cri = connectCri(socket);
      bareClients.push(cri);
      return { name, cri, rt: { cri } as RuntimeUnderTest, containers: b.containers, pods: b.pods };
    };
    targets.push(await bareTarget("bare", false));
    // Only the burst has stats lists: this one takes its turn there.
    const reader = await bareTarget("bare-reads", true);
    const sizes = `answer sizes: ListContainers ${Buffer.from(answers.listContainers, "base64").length} B (berth) vs ${ListContainersResponse.encode(await rts[1]!.cri.runtime.listContainers({}, t)).finish().length} B (containerd)`;

    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
    process.stdout.write(`${nPods} pods x ${perPod} containers; median of ${nCalls} turns after 20 warm-up, servers taking turns call by call; ${sizes}\n\n`);
    process.stdout.write(`| call | berth | containerd | bare server, berth's answers | berth - bare | bare / containerd | berth / containerd |\n|---|---|---|---|---|---|---|\n`);
    for (const c of CALLS) {
      const samples = targets.map(() => [] as number[]);
      for (let i = 0; i < nCalls + 20; i++) {
        for (const [j, s] of targets.entries()) {
          const t0 = performance.now();
          await c.run(s, i);
          if (i >= 20) samples[j]!.push(performance.now() - t0);
        }
      }
      const [berth, containerd, floor] = samples.map(median) as [number, number, number];
      process.stdout.write(`| ${c.name} | ${berth.toFixed(3)} ms | ${containerd.toFixed(3)} ms | ${floor.toFixed(3)} ms | ${((berth - floor) * 1000).toFixed(0)} us | ${(floor / containerd).toFixed(2)} | ${(berth / containerd).toFixed(2)} |\n`);
    }

    // kubelet's second-0 burst, as make bench times it: the six calls in order, 300 ms between bursts.
    const bursts = Math.max(10, Math.round(nCalls / 10));
    const burstTargets = [...targets, reader];
    const burst = POLL.map(() => burstTargets.map(() => [] as number[]));
    for (let i = 0; i < bursts + 2; i++) {
      for (const [j, s] of burstTargets.entries()) {
        await new Promise((r) => setTimeout(r, 300));
        for (const [k, c] of POLL.entries()) {
          const t0 = performance.now();
          await c.run(s.rt);
          if (i >= 2) burst[k]![j]!.push(performance.now() - t0);
        }
      }
    }
    process.stdout.write(`\nThe poll's second-0 burst: median of ${bursts} bursts after 2, 300 ms apart, servers taking turns burst by burst; "bare + reads" also reads the ${cgroupsPaths.length} containers' cgroup files before each stats list\n\n`);
    process.stdout.write(`| call | berth | containerd | bare server, berth's answers | bare + reads | berth - bare | berth - (bare + reads) | bare / containerd | (bare + reads) / containerd | berth / containerd |\n|---|---|---|---|---|---|---|---|---|---|\n`);
    for (const [k, c] of POLL.entries()) {
      const [berth, containerd, floor, readsFloor] = burst[k]!.map(median) as [number, number, number, number];
      const us = (ms: number) => `${(ms * 1000).toFixed(0)} us`;
      process.stdout.write(`| ${c.call} | ${berth.toFixed(3)} ms | ${containerd.toFixed(3)} ms | ${floor.toFixed(3)} ms | ${readsFloor.toFixed(3)} ms | ${us(berth - floor)} | ${us(berth - readsFloor)} | ${(floor / containerd).toFixed(2)} | ${(readsFloor / containerd).toFixed(2)} | ${(berth / containerd).toFixed(2)} |\n`);
    }
  } finally {
    for (const c of bareClients) c.close();
    for (const child of bares) child.kill("SIGKILL");
    for (const rt of rts) {
      await removeEverything(rt.cri, rt.name, log).catch((e) => log(`cleanup: ${String(e)}`));
      await rt.stop().catch((e) => log(`stop: ${String(e)}`));
    }
    await registry?.stop().catch((e) => log(`registry: ${String(e)}`));
    await sweepHost(dir, rts.map((rt) => rt.runcRoot), log);
  }
}

// Output piped into a reader that goes away must not end the run before its cleanup.
process.stdout.on("error", () => undefined);
if (process.argv[2] === "--serve") void serve(process.argv[3]!, process.argv[4]!, process.argv[5] === "--reads");
else
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
