// The OCI runtime (runc or a compatible binary): the only module that spawns it.
import { execa } from "execa";
import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { readFile } from "node:fs/promises";
import type { Readable } from "node:stream";
import { Internal, NotFound } from "../errors.js";
import type { OciProcess, OciResources } from "./spec.js";

export interface OciRuntimeInfo {
  version: string;
}

/** Runs `<binary> --version`; throws with the program's stderr when it does not run. */
export async function ociRuntimeVersion(binary: string): Promise<OciRuntimeInfo> {
  const r = await execa(binary, ["--version"], { reject: false, timeout: 10_000, stripFinalNewline: true });
  if (r.failed) {
    const why = r.stderr || r.shortMessage || `exit code ${r.exitCode}`;
    throw new Error(`OCI runtime "${binary}" does not run: ${why}`);
  }
  return { version: r.stdout.split("\n")[0] ?? "" };
}

export interface RuncState {
  id: string;
  pid: number;
  status: "creating" | "created" | "running" | "stopped" | "paused" | string;
  bundle: string;
  created: string;
}

const NOT_EXIST = /does not exist|not found|no such file or directory/i;

/** One OCI runtime binary with its state root. */
export class OciRuntime {
  constructor(
    readonly binary: string,
    readonly root: string,
    readonly systemdCgroup: boolean,
  ) {}

  /** The flags every call starts with (also what conmon passes through --runtime-arg). */
  globalArgs(): string[] {
    return [`--root=${this.root}`, ...(this.systemdCgroup ? ["--systemd-cgroup"] : [])];
  }

  private async run(args: string[], input?: string): Promise<{ stdout: string; stderr: string; failed: boolean; exitCode?: number }> {
    const r = await execa(this.binary, [...this.globalArgs(), ...args], {
      reject: false,
      timeout: 60_000,
      stripFinalNewline: true,
      ...(input !== undefined ? { input } : { stdin: "ignore" as const }),
    });
    return { stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? ""), failed: r.failed, exitCode: r.exitCode };
  }

  private fail(what: string, id: string, r: { stderr: string; exitCode?: number }): never {
    const why = r.stderr.trim() || `exit code ${r.exitCode}`;
    if (NOT_EXIST.test(why)) throw new NotFound(`${this.binary} ${what} ${id}: container does not exist in the runtime`);
    throw new Internal(`${this.binary} ${what} ${id}: ${why}`);
  }

  async start(id: string): Promise<void> {
    const r = await this.run(["start", id]);
    if (r.failed) this.fail("start", id, r);
  }

  /** Sends a signal; `all` reaches every process of the container's cgroup. Missing or stopped containers are not an error. */
  async kill(id: string, signal: string, all = false): Promise<void> {
    const r = await this.run(["kill", ...(all ? ["--all"] : []), id, signal]);
    if (r.failed && !/not running|does not exist|process already finished|container not running/i.test(r.stderr)) this.fail("kill", id, r);
  }

  /** Deletes the container from the runtime (force kills a live one); idempotent. */
  async delete(id: string, force = true): Promise<void> {
    const r = await this.run(["delete", ...(force ? ["--force"] : []), id]);
    if (r.failed && !NOT_EXIST.test(r.stderr)) this.fail("delete", id, r);
  }

  async state(id: string): Promise<RuncState | undefined> {
    const r = await this.run(["state", id]);
    if (r.failed) {
      if (NOT_EXIST.test(r.stderr)) return undefined;
      this.fail("state", id, r);
    }
    return JSON.parse(r.stdout) as RuncState;
  }

  /**
   * Runs a process in the container and collects its output (ExecSync). runc exec returns the
   * process's exit code once the process has exited and its stdout/stderr are closed; a child
   * left holding them (`sh -c "daemon &"`) is killed drainGraceMs after the process exited,
   * so the call never hangs on it.
   */
  async execSync(id: string, o: ExecSyncOptions): Promise<ExecSyncOutput> {
    // node's spawn (not execa): the call follows the process's exit and caps output itself.
    const sub = spawn(this.binary, [...this.globalArgs(), "exec", "--process", o.processFile, "--pid-file", o.pidFile, id], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out = capture(sub.stdout!, o.outputCap);
    const err = capture(sub.stderr!, o.outputCap);
    let pid: number | undefined;
    let timedOut = false;
    let goneAt = 0;
    const timers: NodeJS.Timeout[] = [];
    // No cost on the usual path: runc is normally gone before the first check.
    const watch = setInterval(() => {
      void (async () => {
        pid ??= await readPidFile(o.pidFile);
        if (pid === undefined || exists(pid)) return;
        goneAt ||= Date.now();
        if (Date.now() - goneAt >= o.drainGraceMs) killGroup(pid);
      })();
    }, EXEC_WATCH_MS);
    if (o.timeoutMs > 0) {
      timers.push(setTimeout(() => {
        timedOut = true;
        void readPidFile(o.pidFile).then((p) => (p ? killGroup(p) : sub.kill("SIGKILL")));
        timers.push(setTimeout(() => sub.kill("SIGKILL"), EXEC_KILL_GRACE_MS));
      }, o.timeoutMs));
    }
    let exitCode: number;
    try {
      exitCode = await new Promise<number>((resolve, reject) => {
        sub.once("error", (e) => reject(new Internal(`cannot run ${this.binary}: ${e.message}`)));
        sub.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? (osConstants.signals as Record<string, number>)[signal] ?? 0 : 0)));
      });
    } finally {
      clearInterval(watch);
      for (const t of timers) clearTimeout(t);
    }
    // runc held the only copies of these pipes: they end with it.
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([out.ended, err.ended]), new Promise<void>((resolve) => (grace = setTimeout(resolve, o.drainGraceMs)))]);
    clearTimeout(grace);
    const truncated = out.truncated() || err.truncated();
    const stdout = out.stop();
    const stderr = err.stop();
    if (!timedOut && exitCode !== 0 && (await readPidFile(o.pidFile)) === undefined) {
      // No pid file: runc failed before the process started, and stderr holds runc's own error.
      const why = runcMessage(stderr.toString("utf8")) || `exit code ${exitCode}`;
      if (/container does not exist/i.test(why)) throw new NotFound(`${this.binary} exec in ${id}: container does not exist in the runtime`);
      throw new Internal(`${this.binary} exec in ${id}: ${why}`);
    }
    return { stdout, stderr, exitCode: timedOut ? -1 : exitCode, timedOut, truncated };
  }

  /** Applies new cgroup limits to a live container. */
  async update(id: string, resources: Omit<OciResources, "devices">): Promise<void> {
    const r = await this.run(["update", "--resources", "-", id], JSON.stringify(resources));
    if (r.failed) this.fail("update", id, r);
  }
}

export interface ExecSyncOptions {
  /** The process spec file (execProcess, written by the caller). */
  processFile: string;
  /** 0 = none. At the deadline the process's group is SIGKILLed. */
  timeoutMs: number;
  /** Bytes kept per stream; the rest is read and dropped so the process never blocks on a full pipe. */
  outputCap: number;
  /** Where runc writes the process's pid (a fresh path the caller removes). */
  pidFile: string;
  /**
   * How long, after the process exited, children of it may keep its stdout/stderr open
   * before they are killed (runc returns only once those pipes are closed).
   */
  drainGraceMs: number;
}

export interface ExecSyncOutput {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
  timedOut: boolean;
  /** Some output was dropped at the cap. */
  truncated: boolean;
}

/** Reads a stream into at most `cap` bytes, dropping the rest; stop() detaches from it. */
function capture(stream: Readable, cap: number) {
  const parts: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const onData = (d: Buffer) => {
    const room = cap - size;
    if (d.length > room) truncated = true;
    if (room <= 0) return;
    const piece = d.length > room ? d.subarray(0, room) : d;
    parts.push(piece);
    size += piece.length;
  };
  stream.on("data", onData);
  const ended = new Promise<void>((resolve) => {
    stream.once("end", resolve);
    stream.once("close", resolve);
    stream.once("error", () => resolve());
  });
  return {
    ended,
    truncated: () => truncated,
    stop: (): Buffer => {
      stream.off("data", onData);
      stream.destroy();
      return Buffer.concat(parts, size);
    },
  };
}

async function readPidFile(file: string): Promise<number | undefined> {
  const n = Number.parseInt((await readFile(file, "utf8").catch(() => "")).trim(), 10);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** True while `pid` exists (a zombie counts: its parent, runc, has not reaped it yet). */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function killGroup(pid: number): void {
  // runc exec makes the process a session (and group) leader: children that did not leave
  // its group go with it.
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** The msg="..." of runc's logrus lines (all of stderr when there is none). */
export function runcMessage(stderr: string): string {
  const msgs = [...stderr.matchAll(/level=error msg="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\"/g, '"'));
  return (msgs.length ? msgs.join("; ") : stderr).trim();
}

/** How often a running exec is checked for a process that exited while runc still waits on its pipes. */
const EXEC_WATCH_MS = 50;
/** After the deadline's SIGKILL, how long runc gets to report before it is killed too. */
const EXEC_KILL_GRACE_MS = 2000;

/** The process runc exec runs for ExecSync: the container's own settings with other args, no terminal. */
export function execProcess(base: OciProcess, cmd: string[], tty = false): OciProcess {
  const p: OciProcess = { ...base, args: [...cmd], terminal: tty };
  delete p.oomScoreAdj;
  return p;
}
