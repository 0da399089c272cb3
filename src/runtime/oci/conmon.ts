// conmon, the per-container monitor (as CRI-O runs it): the only module that spawns it.
// conmon runs `runc create`, holds the container's stdio, writes the CRI log, writes the exit
// code to <exit dir>/<id> and an `oom` file in the bundle, and daemonizes, so containers outlive
// berthd. berthd talks to it through two pipes at start and the bundle's `ctl` fifo later.
import { execa } from "execa";
import { constants } from "node:fs";
import { mkdir, open, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { DeadlineExceeded, Internal, isErrno, NotFound } from "../../errors.js";
import { spawnChild, type SpawnedChild } from "../../native/native.js";
import { isLive, procStat } from "../../proc.js";

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
  const timeoutMs = o.timeoutMs ?? 60_000;
  const reported = new Promise<string>((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => {
      // A hung runtime (or conmon): both go, so nothing of the half-made container keeps running.
      void killConmon(sub, o.conmonPidFile).finally(() =>
        finish(new DeadlineExceeded(`"${o.runtimePath} create" for container ${o.id}, run by conmon, did not finish within ${timeoutMs} ms (runtime.call_timeout); conmon and the runtime were killed`)));
    }, timeoutMs);
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

/** SIGKILLs conmon (the one started and the daemonized one) with its process group: the runtime it runs is in it. */
async function killConmon(started: SpawnedChild, pidFile: string): Promise<void> {
  const daemon = await readPid(pidFile);
  for (const pid of [daemon, started.pid]) {
    if (pid === undefined || !(await isConmon(pid))) continue;
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // gone, or not a group leader
      }
    }
  }
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

/** One line to conmon's control fifo (the bundle's `ctl`). */
async function writeCtl(ctl: string, line: string): Promise<void> {
  let fh;
  try {
    // Non-blocking: with no conmon reading the fifo this fails (ENXIO) instead of hanging.
    fh = await open(ctl, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, "ENXIO") || isErrno(err, "ENOENT")) throw new NotFound(`conmon of the container is not running (no reader on ${ctl})`);
    throw err;
  }
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}

/** Asks conmon to reopen the container log (after kubelet rotated it). */
export async function reopenLog(ctl: string): Promise<void> {
  await writeCtl(ctl, `${REOPEN_LOGS} 0 0\n`);
}

/** Resizes the container's terminal. */
export async function resizeTerminal(ctl: string, height: number, width: number): Promise<void> {
  await writeCtl(ctl, `${WINDOW_RESIZE} ${height} ${width}\n`);
}

/** True when `pid` is a live (not zombie) conmon (pids get reused), read from /proc now. */
export function isConmon(pid: number): boolean {
  const stat = procStat(pid);
  return isLive(stat) && stat.comm === "conmon";
}

/** Live container conmons (not exec ones) whose bundle is directly under `bundles`, by container id. */
export async function containerConmons(bundles: string, isContainerId: (id: string) => boolean): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (!(await isConmon(pid))) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (args.includes("--exec")) continue;
    const bundle = args[args.indexOf("--bundle") + 1] ?? "";
    const cid = args[args.indexOf("--cid") + 1] ?? "";
    if (path.dirname(bundle) === bundles && isContainerId(cid)) out.set(cid, pid);
  }
  return out;
}

export async function conmonVersion(conmon: string): Promise<string> {
  const r = await execa(conmon, ["--version"], { reject: false, timeout: 10_000 });
  if (r.failed) throw new Error(`conmon "${conmon}" does not run: ${r.stderr || r.shortMessage}`);
  return String(r.stdout).split("\n")[0] ?? "";
}
