// conmon, the per-container monitor (as CRI-O runs it): the only module that spawns it.
// conmon runs `runc create`, holds the container's stdio, writes the CRI log, writes the exit
// code to <exit dir>/<id> and an `oom` file in the bundle, and daemonizes, so containers outlive
// berthd. berthd talks to it through two pipes at start and the bundle's `ctl` fifo later.
import { execa } from "execa";
import { constants } from "node:fs";
import { mkdir, open, readFile } from "node:fs/promises";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { Internal, isErrno, NotFound } from "../errors.js";
import { spawnChild, type SpawnedChild } from "../native/native.js";

export interface ConmonOptions {
  /** conmon binary. */
  conmon: string;
  /** Absolute path of the OCI runtime binary conmon runs. */
  runtimePath: string;
  /** Flags conmon passes before the runtime's subcommand (e.g. --root=...). */
  runtimeArgs: string[];
  systemdCgroup: boolean;
  id: string;
  name: string;
  bundle: string;
  containerPidFile: string;
  conmonPidFile: string;
  /** CRI log file (k8s-file driver). */
  logPath: string;
  exitDir: string;
  /** Where conmon links the attach socket (short paths: unix socket names are limited). */
  socketDir: string;
  stdin: boolean;
  stdinOnce: boolean;
  terminal: boolean;
  logLevel: "debug" | "info" | "warning" | "error";
  /** conmon's own messages go here. */
  conmonLogFile: string;
  timeoutMs?: number;
}

export interface ConmonStarted {
  /** The container's init pid (runc create done). */
  containerPid: number;
  /** The daemonized conmon's pid. */
  conmonPid: number;
}

export function conmonArgs(o: ConmonOptions): string[] {
  const args = [
    "--cid", o.id,
    "--cuuid", o.id,
    "--name", o.name,
    "--runtime", o.runtimePath,
    "--bundle", o.bundle,
    "--container-pidfile", o.containerPidFile,
    "--conmon-pidfile", o.conmonPidFile,
    "--log-path", `k8s-file:${o.logPath}`,
    "--exit-dir", o.exitDir,
    "--persist-dir", o.bundle,
    "--socket-dir-path", o.socketDir,
    "--log-level", o.logLevel,
  ];
  for (const a of o.runtimeArgs) args.push("--runtime-arg", a);
  if (o.systemdCgroup) args.push("--systemd-cgroup");
  if (o.terminal) args.push("--terminal");
  if (o.stdin) {
    args.push("--stdin");
    if (!o.stdinOnce) args.push("--leave-stdin-open");
  }
  return args;
}

/**
 * Starts conmon for a container and waits until `runc create` finished: conmon reports the
 * container pid (or the runtime's error) on the sync pipe.
 */
export async function startConmon(o: ConmonOptions): Promise<ConmonStarted> {
  const [errLog] = await Promise.all([
    open(o.conmonLogFile, "a", 0o600),
    mkdir(o.socketDir, { recursive: true, mode: 0o700 }),
    mkdir(o.exitDir, { recursive: true, mode: 0o700 }),
    mkdir(path.dirname(o.logPath), { recursive: true, mode: 0o755 }),
  ]);
  let sub: SpawnedChild;
  let closed = Promise.resolve();
  try {
    // posix_spawn through the addon (not execa, nor node's forking spawn): conmon needs extra
    // pipe fds and its own session, nothing buffered.
    sub = spawnChild({
      file: o.conmon,
      args: conmonArgs(o),
      cwd: o.bundle,
      setsid: true,
      // fd 3: sync pipe (conmon -> berthd), fd 4: start pipe (berthd -> conmon).
      stdio: ["ignore", "ignore", errLog.fd, "out", "in"],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", _OCI_SYNCPIPE: "3", _OCI_STARTPIPE: "4" },
    });
  } catch (err) {
    throw new Internal(`cannot run conmon "${o.conmon}": ${(err as Error).message}`, { cause: err });
  } finally {
    closed = errLog.close();
  }
  const syncPipe = sub.pipes[3]! as Readable;
  const startPipe = sub.pipes[4]! as Writable;
  // Listeners go on before any await: a child that exits first has its unread pipes drained by node, 'end' included.
  const reported = new Promise<string>((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => finish(new Internal(`conmon for ${o.id} did not report within ${o.timeoutMs ?? 60_000} ms`)), o.timeoutMs ?? 60_000);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      syncPipe.removeAllListeners("data");
      syncPipe.destroy();
      if (err) reject(err);
      else resolve(text);
    };
    syncPipe.on("data", (d: Buffer) => {
      text += d.toString("utf8");
      if (text.includes("\n")) finish();
    });
    syncPipe.once("end", () => finish());
    syncPipe.once("error", (e) => finish(e));
    startPipe.on("error", () => undefined);
    startPipe.end("0");
  });
  // Handled now, awaited below: a rejection while the log closes must not count as unhandled.
  reported.catch(() => undefined);
  await closed;
  const message = await reported;
  const parsed = parseSyncMessage(message);
  if (parsed === undefined || parsed.pid <= 0) {
    const log = await readFile(o.conmonLogFile, "utf8").catch(() => "");
    const why = parsed?.message || lastLines(log) || "conmon exited without reporting a container pid";
    throw new Internal(`conmon/runc create ${o.id}: ${why}`);
  }
  const conmonPid = await readPid(o.conmonPidFile);
  return { containerPid: parsed.pid, conmonPid: conmonPid ?? 0 };
}

/** conmon's sync-pipe JSON: {"pid": N} or {"pid": -1, "message": "..."} (key "data" with --api-version). */
export function parseSyncMessage(text: string): { pid: number; message?: string } | undefined {
  const line = text.split("\n").find((l) => l.trim() !== "");
  if (!line) return undefined;
  try {
    const j = JSON.parse(line) as { pid?: number; data?: number; message?: string };
    const pid = j.pid ?? j.data;
    if (typeof pid !== "number") return undefined;
    return { pid, message: j.message };
  } catch {
    return undefined;
  }
}

function lastLines(text: string, n = 5): string {
  return text.trim().split("\n").filter((l) => !/oom_score_adj/.test(l)).slice(-n).join("; ");
}

export async function readPid(file: string): Promise<number | undefined> {
  const t = (await readFile(file, "utf8").catch(() => "")).trim();
  const n = Number.parseInt(t, 10);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

const REOPEN_LOGS = 2;
const WINDOW_RESIZE = 1;

async function writeCtl(bundle: string, line: string): Promise<void> {
  let fh;
  try {
    // Non-blocking: with no conmon reading the fifo this fails (ENXIO) instead of hanging.
    fh = await open(path.join(bundle, "ctl"), constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, "ENXIO") || isErrno(err, "ENOENT")) throw new NotFound(`conmon of the container is not running (no reader on ${path.join(bundle, "ctl")})`);
    throw err;
  }
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}

/** Asks conmon to reopen the container log (after kubelet rotated it). */
export async function reopenLog(bundle: string): Promise<void> {
  await writeCtl(bundle, `${REOPEN_LOGS} 0 0\n`);
}

/** Resizes the container's terminal. */
export async function resizeTerminal(bundle: string, height: number, width: number): Promise<void> {
  await writeCtl(bundle, `${WINDOW_RESIZE} ${height} ${width}\n`);
}

/** True when `pid` is a live (not zombie) conmon (pids get reused). */
export async function isConmon(pid: number): Promise<boolean> {
  if (!(pid > 0)) return false;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const m = /^\d+ \((.*)\) (\S)/s.exec(stat);
  return m !== null && m[1] === "conmon" && m[2] !== "Z" && m[2] !== "X";
}

export async function conmonVersion(conmon: string): Promise<string> {
  const r = await execa(conmon, ["--version"], { reject: false, timeout: 10_000 });
  if (r.failed) throw new Error(`conmon "${conmon}" does not run: ${r.stderr || r.shortMessage}`);
  return String(r.stdout).split("\n")[0] ?? "";
}

export interface ConmonExecOptions {
  conmon: string;
  runtimePath: string;
  runtimeArgs: string[];
  systemdCgroup: boolean;
  /** The container to exec in. */
  id: string;
  name: string;
  /** A private folder for this exec: conmon puts its fifos, exit file and socket link here. */
  execDir: string;
  processFile: string;
  pidFile: string;
  /** Where conmon writes the output (CRI log format). */
  logPath: string;
  /** Whole seconds; 0 = none. conmon kills the process when it passes. */
  timeoutSec: number;
}

export interface ConmonExecResult {
  exitCode: number;
  timedOut: boolean;
}

/**
 * Runs a process in a container through conmon's exec mode: conmon is the subreaper that
 * collects the exit code, stops reading output once the process is gone (a background child
 * holding stdout does not hold the call), and kills the process at the timeout.
 */
export async function conmonExec(o: ConmonExecOptions): Promise<ConmonExecResult> {
  await mkdir(o.execDir, { recursive: true, mode: 0o700 });
  const args = [
    "--cid", o.id,
    "--cuuid", path.basename(o.execDir),
    "--name", o.name,
    "--runtime", o.runtimePath,
    "--bundle", o.execDir,
    "--container-pidfile", o.pidFile,
    "--exec",
    "--exec-process-spec", o.processFile,
    "--log-path", `k8s-file:${o.logPath}`,
    "--exit-dir", o.execDir,
    "--socket-dir-path", o.execDir,
    "--log-level", "error",
  ];
  for (const a of o.runtimeArgs) args.push("--runtime-arg", a);
  if (o.systemdCgroup) args.push("--systemd-cgroup");
  if (o.timeoutSec > 0) args.push("--timeout", String(o.timeoutSec));
  const errLog = await open(path.join(o.execDir, "conmon.log"), "a", 0o600);
  let sub: SpawnedChild;
  let closed = Promise.resolve();
  try {
    sub = spawnChild({
      file: o.conmon,
      args,
      cwd: o.execDir,
      stdio: ["ignore", "ignore", errLog.fd, "out"],
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", _OCI_SYNCPIPE: "3" },
    });
  } catch (err) {
    throw new Internal(`cannot run conmon "${o.conmon}": ${(err as Error).message}`, { cause: err });
  } finally {
    closed = errLog.close();
  }
  const syncPipe = sub.pipes[3]! as Readable;
  // Before any await (see startConmon): else a fast exec loses its exit code and the call hangs.
  const reading = new Promise<string>((resolve, reject) => {
    let buf = "";
    syncPipe.on("data", (d: Buffer) => (buf += d.toString("utf8")));
    syncPipe.once("end", () => resolve(buf));
    syncPipe.once("error", reject);
  });
  // Handled now, awaited below: a rejection while the log closes must not count as unhandled.
  reading.catch(() => undefined);
  await closed;
  const text = await reading;
  const line = text.split("\n").find((l) => l.trim() !== "");
  let msg: { exit_code?: number; data?: number; message?: string } | undefined;
  try {
    msg = line ? (JSON.parse(line) as typeof msg) : undefined;
  } catch {
    msg = undefined;
  }
  const code = msg?.exit_code ?? msg?.data;
  if (typeof code !== "number") {
    const log = await readFile(path.join(o.execDir, "conmon.log"), "utf8").catch(() => "");
    throw new Internal(`exec in ${o.id}: conmon reported no exit code${log ? `: ${lastLines(log)}` : ""}`);
  }
  if (code === -1) {
    if (/timed out/i.test(msg?.message ?? "")) {
      // conmon answers once it has sent SIGKILL; the caller's next exec must not still see the process.
      const pid = await readPid(o.pidFile);
      if (pid) await killAndWaitGone(pid, 2000);
      return { exitCode: -1, timedOut: true };
    }
    throw new Internal(`exec in ${o.id}: ${msg?.message || "the runtime could not start the process"}`);
  }
  return { exitCode: code, timedOut: false };
}

/** SIGKILLs pid until it is gone (reaped), for at most `ms`. */
async function killAndWaitGone(pid: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      return; // ESRCH: gone
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Reads a CRI-format log (`<time> <stdout|stderr> <P|F> <text>`) back into the two streams,
 * keeping at most `cap` bytes of each. The file is read in chunks and reading stops once both
 * streams are full, so a command that printed gigabytes costs no more than the caps.
 */
export async function readCriLog(file: string, cap: number): Promise<{ stdout: Buffer; stderr: Buffer; truncated: boolean }> {
  const parts: Record<"stdout" | "stderr", Buffer[]> = { stdout: [], stderr: [] };
  const size = { stdout: 0, stderr: 0 };
  let truncated = false;
  const add = (s: "stdout" | "stderr", b: Buffer) => {
    const room = cap - size[s];
    if (room <= 0) {
      if (b.length > 0) truncated = true;
      return;
    }
    const piece = b.length > room ? b.subarray(0, room) : b;
    if (piece.length < b.length) truncated = true;
    parts[s].push(Buffer.from(piece));
    size[s] += piece.length;
  };
  const line = (l: Buffer) => {
    const a = l.indexOf(32);
    const b = a < 0 ? -1 : l.indexOf(32, a + 1);
    const c = b < 0 ? -1 : l.indexOf(32, b + 1);
    if (c < 0) return;
    const stream = l.subarray(a + 1, b).toString();
    if (stream !== "stdout" && stream !== "stderr") return;
    const full = l.subarray(b + 1, c).toString() === "F";
    add(stream, l.subarray(c + 1));
    if (full) add(stream, Buffer.from("\n"));
  };
  const fh = await open(file, "r").catch(() => undefined);
  if (fh) {
    try {
      const chunk = Buffer.alloc(1 << 20);
      let rest: Buffer = Buffer.alloc(0);
      let at = 0;
      while (size.stdout < cap || size.stderr < cap) {
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, at);
        if (bytesRead === 0) break;
        at += bytesRead;
        const data = rest.length ? Buffer.concat([rest, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
        let pos = 0;
        for (let end = data.indexOf(10, pos); end >= 0; end = data.indexOf(10, pos)) {
          line(data.subarray(pos, end));
          pos = end + 1;
        }
        rest = Buffer.from(data.subarray(pos));
      }
      if (rest.length) line(rest);
      if (size.stdout >= cap && size.stderr >= cap) truncated = true;
    } finally {
      await fh.close();
    }
  }
  return { stdout: Buffer.concat(parts.stdout, size.stdout), stderr: Buffer.concat(parts.stderr, size.stderr), truncated };
}
