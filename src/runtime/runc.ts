// The OCI runtime (runc or a compatible binary): the only module that spawns it.
import type { Readable } from "node:stream";
import { execHelperPath, spawnChild } from "../native/native.js";
import { runCaptured, type CapturedRun } from "../run-captured.js";
import { readPid } from "./conmon.js";
import { DeadlineExceeded, Internal, NotFound } from "../errors.js";
import type { OciProcess, OciResources } from "./spec.js";

export interface OciRuntimeInfo {
  version: string;
}

/** Runs `<binary> --version`; throws with the program's stderr when it does not run. */
export async function ociRuntimeVersion(binary: string): Promise<OciRuntimeInfo> {
  const r = await runCaptured(binary, ["--version"], { timeoutMs: 10_000 });
  if (r.failed) {
    const why = r.stderr || r.failedWhy || `exit code ${r.exitCode}`;
    throw new Error(`OCI runtime "${binary}" does not run: ${why}`);
  }
  return { version: r.stdout.split("\n")[0] ?? "" };
}

/**
 * The mount options the OCI runtime knows, from `<runtime> features` (runc 1.1 and later);
 * undefined when it has no such command.
 */
export async function ociRuntimeMountOptions(binary: string): Promise<string[] | undefined> {
  const r = await runCaptured(binary, ["features"], { timeoutMs: 10_000 });
  if (r.failed) return undefined;
  try {
    const f = JSON.parse(r.stdout) as { mountOptions?: unknown };
    return Array.isArray(f.mountOptions) ? f.mountOptions.filter((o): o is string => typeof o === "string") : [];
  } catch {
    return undefined;
  }
}

export interface RuncState {
  id: string;
  pid: number;
  status: "creating" | "created" | "running" | "stopped" | "paused" | string;
  bundle: string;
  created: string;
}

const NOT_EXIST = /does not exist|not found|no such file or directory/i;

let unrunnable: ((binary: string, why: string) => void) | undefined;

/** Tells `fn` of every runtime call whose binary could not be started (node-status.ts: RuntimeReady). */
export function observeUnrunnable(fn: ((binary: string, why: string) => void) | undefined): void {
  unrunnable = fn;
}

/** One OCI runtime binary with its state root. */
export class OciRuntime {
  constructor(
    readonly binary: string,
    readonly root: string,
    readonly systemdCgroup: boolean,
    /** runtime.call_timeout: a call that takes longer is killed and fails with DEADLINE_EXCEEDED. */
    readonly timeoutMs = 60_000,
  ) {}

  /** The flags every call starts with (also what conmon passes through --runtime-arg). */
  globalArgs(): string[] {
    return [`--root=${this.root}`, ...(this.systemdCgroup ? ["--systemd-cgroup"] : [])];
  }

  private async run(args: string[], input?: string): Promise<CapturedRun> {
    const r = await runCaptured(this.binary, [...this.globalArgs(), ...args], { input, timeoutMs: this.timeoutMs });
    if (r.notStarted !== undefined) unrunnable?.(this.binary, r.notStarted);
    return r;
  }

  private fail(what: string, id: string, r: { stderr: string; exitCode: number | null; failedWhy?: string; timedOut: boolean }): never {
    if (r.timedOut) throw new DeadlineExceeded(`${this.binary} ${what} ${id} did not finish within ${this.timeoutMs} ms (runtime.call_timeout); it was killed`);
    const why = runcMessage(r.stderr) || r.failedWhy || `exit code ${r.exitCode}`;
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
    if (r.failed && (r.timedOut || !/not running|does not exist|process already finished|container not running/i.test(r.stderr))) this.fail("kill", id, r);
  }

  /** Deletes the container from the runtime (force kills a live one); idempotent. */
  async delete(id: string, force = true): Promise<void> {
    const r = await this.run(["delete", ...(force ? ["--force"] : []), id]);
    if (r.failed && (r.timedOut || !NOT_EXIST.test(r.stderr))) this.fail("delete", id, r);
  }

  async state(id: string): Promise<RuncState | undefined> {
    const r = await this.run(["state", id]);
    if (r.failed) {
      if (!r.timedOut && NOT_EXIST.test(r.stderr)) return undefined;
      this.fail("state", id, r);
    }
    return JSON.parse(r.stdout) as RuncState;
  }

  /**
   * Runs a process in the container and collects its output (ExecSync): `exec --detach` under
   * berth-exec, which is the process's parent once the runtime has returned and reports its
   * exit. The output pipes are read until they close or, once the process has exited, for
   * drainGraceMs more: children it left holding them keep running and are not waited for.
   * At the timeout the process's group is SIGKILLed (the runtime makes it a session leader).
   */
  async execSync(id: string, o: ExecSyncOptions): Promise<ExecSyncOutput> {
    const args = [o.pidFile, this.binary, ...this.globalArgs(), "exec", "--detach", "--pid-file", o.pidFile, "--process", o.processFile, id];
    let child;
    try {
      child = spawnChild({ file: execHelperPath(), args, env: process.env, setsid: true, stdio: ["ignore", "out", "out", "out"] });
    } catch (err) {
      throw new Internal(`cannot run berth-exec (run \`make build\`): ${(err as Error).message}`, { cause: err });
    }
    const out = capture(child.pipes[1]!, o.outputCap);
    const err = capture(child.pipes[2]!, o.outputCap);
    const reportText = capture(child.pipes[3]!, 4096);
    let timedOut = false;
    const timers: NodeJS.Timeout[] = [];
    if (o.timeoutMs > 0) {
      timers.push(setTimeout(() => {
        timedOut = true;
        void readPid(o.pidFile).then((pid) => {
          if (pid) killGroup(pid);
          // Not started yet (or no pid file): berth-exec leads its own session and process
          // group, and the runtime is in it: the group goes.
          else killGroup(child.pid);
        });
      }, o.timeoutMs));
    }
    let report: string;
    try {
      await Promise.all([reportText.ended, child.exited]);
      report = reportText.stop().toString("utf8").trim();
    } finally {
      for (const t of timers) clearTimeout(t);
    }
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([out.ended, err.ended]), new Promise<void>((resolve) => (grace = setTimeout(resolve, o.drainGraceMs)))]);
    clearTimeout(grace);
    const truncated = out.truncated() || err.truncated();
    const stdout = out.stop();
    const stderr = err.stop();
    const [kind, value] = [report.split(" ")[0], report.slice(report.indexOf(" ") + 1)];
    if (kind === "exit" || kind === "signal") {
      const code = Number(value) + (kind === "signal" ? 128 : 0);
      return { stdout, stderr, exitCode: timedOut ? -1 : code, timedOut, truncated };
    }
    if (timedOut) return { stdout, stderr, exitCode: -1, timedOut, truncated };
    if (kind === "runtime") {
      const why = runcMessage(stderr.toString("utf8")) || `exit code ${value}`;
      if (/container does not exist/i.test(why)) throw new NotFound(`${this.binary} exec in ${id}: container does not exist in the runtime`);
      throw new Internal(`${this.binary} exec in ${id}: ${why}`);
    }
    throw new Internal(`exec in ${id}: berth-exec: ${report || "exited without a report"}`);
  }

  /** Applies new cgroup limits to a live container. */
  async update(id: string, resources: Omit<OciResources, "devices">): Promise<void> {
    const r = await this.run(["update", "--resources", "-", id], JSON.stringify(resources));
    if (r.failed) this.fail("update", id, r);
  }
}

/** The msg="..." of runc's logrus lines (all of stderr when there is none). */
export function runcMessage(stderr: string): string {
  const msgs = [...stderr.matchAll(/level=error msg="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\"/g, '"'));
  return (msgs.length ? msgs.join("; ") : stderr).trim();
}

/** The process runc exec runs for ExecSync: the container's own settings with other args, no terminal. */
export function execProcess(base: OciProcess, cmd: string[], tty = false): OciProcess {
  const p: OciProcess = { ...base, args: [...cmd], terminal: tty };
  delete p.oomScoreAdj;
  return p;
}

export interface ExecSyncOptions {
  /** The process spec file (execProcess, written by the caller). */
  processFile: string;
  /** Where the runtime writes the process's pid (a fresh path the caller removes). */
  pidFile: string;
  /** 0 = none. At the deadline the process's group is SIGKILLed. */
  timeoutMs: number;
  /** Bytes kept per stream; the rest is read and dropped so the process never blocks on a full pipe. */
  outputCap: number;
  /** How long, after the process exited, its output is still read while something holds it open. */
  drainGraceMs: number;
}

export interface ExecSyncOutput {
  stdout: Buffer;
  stderr: Buffer;
  /** -1 when timed out; 128+N when killed by signal N. */
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

function killGroup(pid: number): void {
  // The runtime makes the process a session (and group) leader: children that did not leave
  // its group go with it.
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // gone
    }
  }
}
