// Per-call CPU and latency of gRPC server stacks (bench/REPORT.md, "gRPC server stacks"):
// one grpc-js client (src/cri/client.ts) per server, Version over a unix socket, WARMUP calls,
// then ROUNDS rounds of CALLS calls per server, the servers taking turns each round. Server CPU
// is utime+stime from /proc/PID/stat over a round (10 ms ticks) and, finer, the sum of the
// per-thread run times in /proc/PID/task/*/schedstat (ns); each is the median over the rounds.
// Latency is the median of the round medians.
//
//   node dist/bench/grpc-stacks.js [--old-berthd /work/main/bin/berthd] [--rounds 9] [--calls 1000]
//
// Needs root (berthd). The bare servers run as children of this script (--serve MODE SOCKET).
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connectCri, type CriClient } from "../src/cri/client.js";
import { RuntimeServiceService, VersionResponse } from "../src/gen/api.js";
import { GrpcServer, methodTable, type Call } from "../src/grpc/server.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const HZ = 100;

const VERSION_RESPONSE = Buffer.from(VersionResponse.encode({ version: "0.1.0", runtimeName: "bench", runtimeVersion: "1", runtimeApiVersion: "v1" }).finish());

/** A bare server answering Version with a pre-encoded response, in this process, until killed. */
async function serve(mode: string, socket: string): Promise<void> {
  if (mode === "grpc-js") {
    const grpc = await import("@grpc/grpc-js");
    const server = new grpc.Server();
    server.addService({ version: { ...RuntimeServiceService.version, responseSerialize: (b: Buffer) => b } }, {
      version: (_call: unknown, cb: (err: null, res: Buffer) => void) => cb(null, VERSION_RESPONSE),
    });
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  } else if (mode === "own") {
    const definition = { version: { ...RuntimeServiceService.version, responseSerialize: (b: Buffer) => b } };
    const server = new GrpcServer(methodTable([{ service: "RuntimeService", definition, handlers: { version: (call: Call) => call.reply(VERSION_RESPONSE) } }]));
    const listener = net.createServer((c) => server.serve(c));
    await new Promise<void>((resolve) => listener.listen(socket, resolve));
  } else {
    throw new Error(`unknown server ${mode}`);
  }
  process.stdout.write("serving\n");
}

interface Server {
  name: string;
  socket: string;
  proc: ChildProcess;
  cri?: CriClient;
  cleanup(): Promise<void>;
}

async function waitForSocket(socket: string, proc: ChildProcess, ready: () => boolean): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${socket}: the server exited (${proc.exitCode})`);
    if (ready() && (await stat(socket).then((s) => s.isSocket(), () => false))) return;
    if (Date.now() > until) throw new Error(`${socket}: not serving after 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startBerthd(name: string, berthd: string, dir: string): Promise<Server> {
  const d = path.join(dir, name);
  const socket = path.join(d, "berth.sock");
  await mkdir(path.join(d, "cni"), { recursive: true });
  const config = path.join(d, "berth.toml");
  await writeFile(config, `root = "${d}/root"\nstate = "${d}/state"\nsocket = "${socket}"\nlog_level = "info"\n[metrics]\naddress = ""\n`);
  const proc = spawn(berthd, ["--config", config, "--cni-conf-dir", path.join(d, "cni")], {
    env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}` },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  proc.stderr!.on("data", (b: Buffer) => (out += b.toString()));
  await waitForSocket(socket, proc, () => out.includes("berthd serving"));
  return { name, socket, proc, cleanup: () => stopProc(proc) };
}

async function startBare(mode: string, dir: string): Promise<Server> {
  const socket = path.join(dir, `${mode}.sock`);
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), "--serve", mode, socket], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  proc.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  await waitForSocket(socket, proc, () => out.includes("serving"));
  return { name: `bare ${mode} server`, socket, proc, cleanup: () => stopProc(proc) };
}

function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    proc.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}

/** utime+stime of `pid` in microseconds (10 ms resolution). */
function statCpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / HZ;
}

/** The run time of every thread of `pid` in microseconds (schedstat: ns). */
function schedCpuUs(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // the thread ended
    }
  }
  return ns / 1000;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "old-berthd": { type: "string", default: "/work/main/bin/berthd" },
      "new-berthd": { type: "string", default: path.join(REPO, "bin/berthd") },
      rounds: { type: "string", default: "9" },
      calls: { type: "string", default: "1000" },
      warmup: { type: "string", default: "300" },
      serve: { type: "string" },
    },
    allowPositionals: true,
  });
  if (values.serve) {
    const socket = process.argv[process.argv.length - 1]!;
    await serve(values.serve, socket);
    return;
  }
  const rounds = Number(values.rounds);
  const calls = Number(values.calls);
  const warmup = Number(values.warmup);
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-grpc-stacks-"));
  const servers: Server[] = [];
  try {
    servers.push(await startBerthd("berthd (before: grpc-js server)", values["old-berthd"]!, dir));
    servers.push(await startBerthd("berthd (this tree: own server)", values["new-berthd"]!, dir));
    servers.push(await startBare("grpc-js", dir));
    servers.push(await startBare("own", dir));
    for (const s of servers) {
      s.cri = connectCri(s.socket, { ownConnection: true });
      for (let i = 0; i < warmup; i++) await s.cri.runtime.version({});
    }
    const res = new Map<string, { stat: number[]; sched: number[]; lat: number[] }>(servers.map((s) => [s.name, { stat: [], sched: [], lat: [] }]));
    const lat = new Float64Array(calls);
    for (let r = 0; r < rounds; r++) {
      for (const s of servers) {
        const pid = s.proc.pid!;
        const stat0 = statCpuUs(pid);
        const sched0 = schedCpuUs(pid);
        for (let i = 0; i < calls; i++) {
          const t = process.hrtime.bigint();
          await s.cri!.runtime.version({});
          lat[i] = Number(process.hrtime.bigint() - t) / 1e6;
        }
        const m = res.get(s.name)!;
        m.stat.push((statCpuUs(pid) - stat0) / calls);
        m.sched.push((schedCpuUs(pid) - sched0) / calls);
        m.lat.push(median(Array.from(lat)));
      }
      process.stderr.write(`round ${r + 1}/${rounds} done\n`);
    }
    console.log(`${rounds} rounds x ${calls} Version calls per server, ${warmup} warm-up; load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    console.log("| server | CPU per call (utime+stime) | CPU per call (schedstat) | latency median |");
    console.log("| --- | --- | --- | --- |");
    for (const s of servers) {
      const m = res.get(s.name)!;
      console.log(`| ${s.name} | ${median(m.stat).toFixed(0)} us | ${median(m.sched).toFixed(0)} us | ${median(m.lat).toFixed(3)} ms |`);
    }
  } finally {
    for (const s of servers) {
      s.cri?.close();
      await s.cleanup().catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
