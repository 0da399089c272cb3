// A process wired to a streaming session (exec): pipes, or a pty berthd holds when the
// session has a terminal. The OCI runtime object decides what runs (`runc exec`); this module
// relays its stdio and exit.
import { close as closeCb } from "node:fs";
import { promisify } from "node:util";
import type { Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import { execa, type ResultPromise } from "execa";
import type { Logger } from "../../log.js";
import { fdSocket, makeRaw, openPty, setWindowSize } from "../../native/native.js";
import type { StreamIO, TerminalSize } from "../stream-io.js";

const close = promisify(closeCb);

/** After the process exits, how long its output may keep flowing (a background child can hold it open forever). */
const DRAIN_GRACE_MS = 2000;

/** How a process's exit became a number: its code, or 128 + the signal that killed it. Throws when it never ran. */
function exitStatus(r: { exitCode?: number; signal?: string; shortMessage?: string }): number {
  if (typeof r.exitCode === "number") return r.exitCode;
  if (!r.signal) throw new Error(r.shortMessage ?? "the process did not start");
  const n = r.signal ? (({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 }) as Record<string, number>)[r.signal] : undefined;
  return 128 + (n ?? 0);
}

/** Waits until `r` ends (or errors/closes), at most `ms`; false on timeout. */
function ended(r: Readable, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (r.readableEnded || r.destroyed) return resolve(true);
    const t = setTimeout(() => done(false), ms);
    const done = (v: boolean) => {
      clearTimeout(t);
      r.off("end", yes);
      r.off("close", yes);
      resolve(v);
    };
    const yes = () => done(true);
    r.once("end", yes);
    r.once("close", yes);
  });
}

function copyInto(from: Readable, to: Writable | undefined): void {
  if (!to) {
    from.resume();
    return;
  }
  from.on("data", (d: Buffer) => {
    if (!to.destroyed && !to.write(d)) {
      from.pause();
      to.once("drain", () => from.resume());
    }
  });
  to.once("close", () => from.resume());
}

export interface SpawnedCommand {
  file: string;
  args: string[];
  /** Called once the client went away while the process still runs: make it die. */
  kill?: () => Promise<void>;
}

/**
 * Runs a command wired to a streaming session: pipes, or a pty berthd holds when io.tty (its
 * size follows io.resize; the child gets SIGWINCH so a runc in between resizes the container's
 * terminal). Resolves with the exit status once the output has drained.
 */
export async function runWired(cmd: SpawnedCommand, io: StreamIO, log: Logger): Promise<number> {
  if (io.tty) return runWithPty(cmd, io, log);
  const child = execa(cmd.file, cmd.args, {
    stdin: io.stdin ? "pipe" : "ignore",
    stdout: io.stdout ? "pipe" : "ignore",
    stderr: io.stderr ? "pipe" : "ignore",
    buffer: false,
    reject: false,
    stripFinalNewline: false,
  });
  if (io.stdin && child.stdin) {
    child.stdin.on("error", () => undefined);
    io.stdin.pipe(child.stdin);
  }
  if (child.stdout) copyInto(child.stdout, io.stdout);
  if (child.stderr) copyInto(child.stderr, io.stderr);
  const stopOnAbort = onAbort(io.signal, child, cmd, log);
  try {
    const r = await child;
    const outputs = [child.stdout, child.stderr].filter((s): s is NonNullable<typeof s> => !!s);
    const drained = await Promise.all(outputs.map((s) => ended(s, DRAIN_GRACE_MS)));
    if (drained.includes(false)) log.debug({ cmd: cmd.args.at(-1) }, "output still open after the process exited: a background child holds it; stopped reading");
    for (const s of outputs) s.destroy();
    if (io.stdin && child.stdin) io.stdin.unpipe(child.stdin);
    return exitStatus(r);
  } finally {
    stopOnAbort();
  }
}

function onAbort(signal: AbortSignal, child: ResultPromise, cmd: SpawnedCommand, log: Logger): () => void {
  const abort = () => {
    log.debug({ pid: child.pid }, "client went away: killing the streaming process");
    void (cmd.kill?.() ?? Promise.resolve()).catch(() => undefined).finally(() => {
      // Whatever stands between berthd and the process (runc) goes too, if it lingers.
      setTimeout(() => child.kill("SIGKILL"), 1000).unref();
    });
    if (!cmd.kill) child.kill("SIGKILL");
  };
  if (signal.aborted) abort();
  else signal.addEventListener("abort", abort, { once: true });
  return () => signal.removeEventListener("abort", abort);
}

async function runWithPty(cmd: SpawnedCommand, io: StreamIO, log: Logger): Promise<number> {
  const { master, slave } = openPty();
  let masterOpen = true;
  let term: Socket;
  let child: ResultPromise;
  try {
    // Raw from the start: whatever sits between (runc) relays the container's own terminal as is.
    makeRaw(slave);
    if (io.resize.latest) setWindowSize(master, io.resize.latest.height, io.resize.latest.width);
    // execa takes an fd number for a stdio slot; its types only list literal ones.
    const fd = slave as 3;
    child = execa(cmd.file, cmd.args, { stdin: fd, stdout: fd, stderr: fd, buffer: false, reject: false });
    term = fdSocket(master);
  } catch (err) {
    await close(master).catch(() => undefined);
    throw err;
  } finally {
    await close(slave).catch(() => undefined);
  }
  term.on("error", (err: NodeJS.ErrnoException) => {
    // EIO: every holder of the terminal's other side has gone; that is the end of output.
    if (err.code !== "EIO") log.debug({ err: err.message }, "pty error");
  });
  term.once("close", () => (masterOpen = false));
  const resize = (s: TerminalSize) => {
    if (!masterOpen) return;
    try {
      setWindowSize(master, s.height, s.width);
      child.kill("SIGWINCH");
    } catch (err) {
      log.debug({ err: (err as Error).message }, "resize failed");
    }
  };
  io.resize.on("resize", resize);
  if (io.stdin) {
    const stdin = io.stdin;
    stdin.on("data", (d: Buffer) => {
      if (masterOpen && !term.write(d)) {
        stdin.pause();
        term.once("drain", () => stdin.resume());
      }
    });
  }
  copyInto(term, io.stdout);
  const stopOnAbort = onAbort(io.signal, child, cmd, log);
  try {
    const r = await child;
    await ended(term, DRAIN_GRACE_MS);
    return exitStatus(r);
  } finally {
    stopOnAbort();
    io.resize.off("resize", resize);
    term.destroy();
  }
}
