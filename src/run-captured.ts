// Running a short-lived helper program (an OCI runtime command, a CNI plugin) and collecting
// its output. These run several times per pod and container operation, so they start through
// the native addon's posix_spawn (0.9 ms for /bin/true from a 126 MiB berthd; node's spawn,
// which forks, 3.1 ms; execa adds 0.9 ms more). A name without a slash goes through node's
// spawn for its PATH lookup.
import { spawn } from "node:child_process";
import { PassThrough, type Readable } from "node:stream";
import { spawnChild } from "./native/native.js";

export interface CapturedRun {
  stdout: string;
  stderr: string;
  /** null when killed by a signal or when it never ran. */
  exitCode: number | null;
  timedOut: boolean;
  /** Why it did not run or finish normally (spawn error, output over the cap, killed by a signal). */
  failedWhy: string | undefined;
  /** Anything but a clean exit 0. */
  failed: boolean;
  /** Why the program never started (no such file, not executable, bad interpreter); else undefined. */
  notStarted: string | undefined;
}

export interface CaptureOptions {
  /** Written to stdin, then stdin is closed; without it stdin is /dev/null. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Bytes kept per stream; more kills the program (default 1 MiB). */
  maxOutput?: number;
}

export function runCaptured(file: string, args: string[], o: CaptureOptions): Promise<CapturedRun> {
  const max = o.maxOutput ?? 1 << 20;
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const bytes = { stdout: 0, stderr: 0 };
    let timedOut = false;
    let failedWhy: string | undefined;
    const started = startChild(file, args, o);
    const timer = setTimeout(() => {
      timedOut = true;
      failedWhy ??= `timed out after ${o.timeoutMs} ms`;
      started.kill();
      // Something outside the program's process group may still hold its output: stop waiting for it.
      setTimeout(() => {
        started.stdout.destroy();
        started.stderr.destroy();
      }, 1000).unref();
    }, o.timeoutMs);
    const collect = (into: Buffer[], which: "stdout" | "stderr") => (d: Buffer) => {
      bytes[which] += d.length;
      if (bytes[which] > max) {
        failedWhy ??= `${which} exceeded ${max} bytes`;
        started.kill();
        return;
      }
      into.push(d);
    };
    // Done when the program has exited and both outputs are closed (a child it left holding
    // them keeps the call open, up to the timeout).
    const ended = (s: Readable) => new Promise<void>((r) => {
      s.on("data", collect(s === started.stdout ? out : err, s === started.stdout ? "stdout" : "stderr"));
      s.once("close", () => r());
      s.once("error", () => r());
    });
    if (o.input !== undefined && started.stdin) {
      started.stdin.on("error", () => undefined);
      started.stdin.end(o.input);
    }
    void Promise.all([started.exited, ended(started.stdout), ended(started.stderr)]).then(([exit]) => {
      clearTimeout(timer);
      if (exit.error) failedWhy ??= exit.error;
      if (exit.signal) failedWhy ??= `killed by ${exit.signal}`;
      const text = (b: Buffer[]) => Buffer.concat(b).toString("utf8").replace(/\n$/, "");
      resolve({ stdout: text(out), stderr: text(err), exitCode: exit.signal ? null : exit.code, timedOut, failedWhy, failed: failedWhy !== undefined || exit.code !== 0, notStarted: exit.code === null && exit.signal === null ? exit.error : undefined });
    });
  });
}

interface Started {
  stdin: NodeJS.WritableStream | undefined;
  stdout: Readable;
  stderr: Readable;
  exited: Promise<{ code: number | null; signal: string | null; error?: string }>;
  kill(): void;
}

function startChild(file: string, args: string[], o: CaptureOptions): Started {
  const env = o.env ?? process.env;
  if (file.startsWith("/")) {
    try {
      // Its own session and process group: a kill reaches what a hung wrapper script started too.
      const c = spawnChild({ file, args, env, setsid: true, stdio: [o.input === undefined ? "ignore" : "in", "out", "out"] });
      return { stdin: c.pipes[0], stdout: c.pipes[1]!, stderr: c.pipes[2]!, exited: c.exited, kill: () => killGroup(c.pid, () => c.kill("SIGKILL")) };
    } catch (e) {
      // posix_spawn failed (no such file, not executable): answered like a failed spawn.
      return failedStart((e as Error).message);
    }
  }
  const child = spawn(file, args, { env, detached: true, stdio: [o.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
  const exited = new Promise<{ code: number | null; signal: string | null; error?: string }>((resolve) => {
    let error: string | undefined;
    child.once("error", (e) => (error = e.message));
    child.once("close", (code, signal) => resolve({ code, signal, error }));
  });
  return { stdin: child.stdin ?? undefined, stdout: child.stdout!, stderr: child.stderr!, exited, kill: () => killGroup(child.pid, () => child.kill("SIGKILL")) };
}

/** SIGKILLs the process group `leader` leads (the leader itself through `killLeader`, which never hits a reused pid). */
function killGroup(leader: number | undefined, killLeader: () => unknown): void {
  killLeader();
  if (leader === undefined || leader <= 0) return;
  try {
    process.kill(-leader, "SIGKILL");
  } catch {
    // the group is gone
  }
}

function failedStart(why: string): Started {
  const empty = () => {
    const r = new PassThrough();
    r.end();
    return r;
  };
  return { stdin: undefined, stdout: empty(), stderr: empty(), exited: Promise.resolve({ code: null, signal: null, error: why }), kill: () => undefined };
}
