// The processes behind berth's streaming server: exec through `runc exec` (behind a pty
// berthd holds when tty), attach through conmon's attach socket and control fifo, and port
// forward through a TCP connection made inside the pod's network namespace.
import { randomBytes } from "node:crypto";
import { constants as fsc } from "node:fs";
import { close as closeCb } from "node:fs";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import net, { type Socket } from "node:net";
import path from "node:path";
import type { Duplex, Readable, Writable } from "node:stream";
import { execa, type ResultPromise } from "execa";
import { FailedPrecondition, NotFound, wrap } from "../errors.js";
import type { Logger } from "../log.js";
import { connectInNetns, connectSeqpacket, fdSocket, makeRaw, openPty, setWindowSize } from "../native/native.js";
import type { StreamIO, StreamRuntime, TerminalSize } from "./stream-io.js";
import type { SandboxLookup } from "./types.js";
import type { Config } from "../config.js";
import { codeOf } from "../errors.js";
import { status as grpcStatus } from "@grpc/grpc-js";

const close = promisify(closeCb);

/** After the process exits, how long its output may keep flowing (a background child can hold it open forever). */
const DRAIN_GRACE_MS = 2000;
/** conmon reads attach input in 32 KiB packets; smaller packets are never cut. */
const ATTACH_PACKET = 8192;
/** conmon's attach socket prefixes every output packet with the pipe it came from. */
const ATTACH_STDOUT = 2;
const ATTACH_STDERR = 3;

/** What streaming needs to know about a container (the container layer provides it). */
export interface StreamContainer {
  id: string;
  running: boolean;
  /** The container's own process has a terminal (attach sees one merged stream). */
  tty: boolean;
  /** Closing the attach input closes the container's stdin. */
  stdinOnce: boolean;
  /** The OCI runtime binary and its --root. */
  runtimePath: string;
  runtimeRoot: string;
  /** The OCI bundle: its config.json holds the process settings every exec starts from. */
  bundle: string;
  /** conmon's attach socket (SOCK_SEQPACKET) and control fifo. */
  attachSocket: string;
  controlFifo: string;
}

export interface StreamContainers {
  getStreamContainer(id: string): Promise<StreamContainer | undefined>;
}

/** What streaming reads of the container layer's record (container-record.ts). */
export interface ContainerRecordView {
  id: string;
  phase: "created" | "running" | "exited";
  tty: boolean;
  stdinOnce: boolean;
  handler: string;
  runtimeRoot: string;
  bundle: string;
}

/** The container layer's records, seen as streaming targets. */
export function streamContainersOf(containers: { record(id: string): Promise<ContainerRecordView> }, config: Config): StreamContainers {
  return {
    async getStreamContainer(id: string): Promise<StreamContainer | undefined> {
      let r: ContainerRecordView;
      try {
        r = await containers.record(id);
      } catch (err) {
        if (codeOf(err) === grpcStatus.NOT_FOUND) return undefined;
        throw err;
      }
      return {
        id: r.id,
        running: r.phase === "running",
        tty: r.tty,
        stdinOnce: r.stdinOnce,
        runtimePath: config.runtime.handlers[r.handler]?.path ?? "runc",
        runtimeRoot: r.runtimeRoot,
        bundle: r.bundle,
        // conmon binds the socket through a link (<socket dir>/<id>, cut one character short when
        // it would be 107 long) to the bundle: the bundle path is the one that always holds.
        attachSocket: path.join(r.bundle, "attach"),
        controlFifo: path.join(r.bundle, "ctl"),
      };
    },
  };
}

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

export interface RuntimeStreamingDeps {
  containers: StreamContainers;
  sandboxes: SandboxLookup;
  /** A directory for exec pid files. */
  stateDir: string;
  log: Logger;
}

export class RuntimeStreaming implements StreamRuntime {
  constructor(private readonly deps: RuntimeStreamingDeps) {}

  private async running(id: string): Promise<StreamContainer> {
    const c = await this.deps.containers.getStreamContainer(id);
    if (!c) throw new NotFound(`container "${id}" not found`);
    if (!c.running) throw new FailedPrecondition(`container "${id}" is not running`);
    return c;
  }

  async checkContainer(containerId: string): Promise<void> {
    await this.running(containerId);
  }

  async checkSandbox(sandboxId: string): Promise<void> {
    const s = this.deps.sandboxes.getSandbox(sandboxId);
    if (!s) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    if (s.state !== "ready") throw new FailedPrecondition(`pod sandbox "${sandboxId}" is not ready`);
  }

  async exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }> {
    const c = await this.running(containerId);
    await mkdir(this.deps.stateDir, { recursive: true, mode: 0o700 });
    const base = path.join(this.deps.stateDir, `${containerId.slice(0, 12)}-${randomBytes(6).toString("hex")}`);
    const pidFile = `${base}.pid`;
    const processFile = `${base}.json`;
    try {
      // The container's own process settings (user, env, cwd, capabilities...) with this command;
      // consoleSize makes runc size the terminal before the command runs.
      let spec: { process?: Record<string, unknown> };
      try {
        spec = JSON.parse(await readFile(path.join(c.bundle, "config.json"), "utf8")) as typeof spec;
      } catch (err) {
        throw wrap(`read the process settings of container ${containerId}`, err);
      }
      const size = io.resize.latest;
      const proc = {
        ...spec.process,
        args: cmd,
        terminal: io.tty,
        consoleSize: io.tty && size && size.width > 0 && size.height > 0 ? { height: size.height, width: size.width } : undefined,
      };
      await writeFile(processFile, JSON.stringify(proc), { mode: 0o600 });
      const args = ["--root", c.runtimeRoot, "exec", "--process", processFile, "--pid-file", pidFile, c.id];
      const kill = async () => {
        // runc writes the pid file once the process exists; a client gone sooner waits for it.
        let pid = NaN;
        for (let i = 0; i < 50 && !(pid > 1); i++) {
          pid = Number.parseInt(await readFile(pidFile, "utf8").catch(() => ""), 10);
          if (!(pid > 1)) await new Promise((r) => setTimeout(r, 100));
        }
        if (!Number.isInteger(pid) || pid <= 1) return;
        // With a tty the process leads its own session and group: take the whole group.
        if (io.tty) {
          try { process.kill(-pid, "SIGKILL"); } catch { /* already gone */ }
        }
        try { process.kill(pid, "SIGKILL"); } catch { /* already gone */ }
      };
      const exitCode = await runWired({ file: c.runtimePath, args, kill }, io, this.deps.log);
      return { exitCode };
    } catch (err) {
      throw wrap(`exec in container ${containerId}`, err);
    } finally {
      await rm(pidFile, { force: true });
      await rm(processFile, { force: true });
    }
  }

  async attach(containerId: string, io: StreamIO): Promise<void> {
    const c = await this.running(containerId);
    let sock: Socket;
    try {
      sock = fdSocket(connectSeqpacket(c.attachSocket));
    } catch (err) {
      throw wrap(`connect to conmon's attach socket ${c.attachSocket}`, err);
    }
    const log = this.deps.log;
    sock.on("error", (err) => log.debug({ container: containerId, err: err.message }, "attach socket error"));
    const resize = (s: TerminalSize) => void writeControl(c.controlFifo, `1 ${s.height} ${s.width}\n`).catch((err) =>
      log.debug({ err: (err as Error).message }, "resize through conmon's control fifo failed"));
    if (c.tty) {
      if (io.resize.latest) resize(io.resize.latest);
      io.resize.on("resize", resize);
    }
    // Each read is one packet: [pipe byte][data]. With a tty, everything arrives as stdout.
    sock.on("data", (packet: Buffer) => {
      if (packet.length < 1) return;
      const to = packet[0] === ATTACH_STDERR ? io.stderr ?? (c.tty ? io.stdout : undefined) : packet[0] === ATTACH_STDOUT ? io.stdout : undefined;
      if (to && !to.destroyed && !to.write(packet.subarray(1))) {
        sock.pause();
        to.once("drain", () => sock.resume());
        to.once("close", () => sock.resume());
      }
    });
    const pumpStdin = async (stdin: Readable) => {
      for await (const chunk of stdin) {
        const b = chunk as Buffer;
        for (let off = 0; off < b.length; off += ATTACH_PACKET) {
          if (sock.destroyed) return;
          // One write in flight at a time, so libuv never merges two into one packet.
          await new Promise<void>((resolve) => sock.write(b.subarray(off, off + ATTACH_PACKET), () => resolve()));
        }
      }
      // Closing our input closes the container's stdin only for stdin_once containers.
      if (c.stdinOnce && !c.tty && !sock.destroyed) sock.end();
    };
    if (io.stdin) void pumpStdin(io.stdin).catch(() => undefined);
    try {
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        sock.once("end", done);
        sock.once("close", done);
        if (io.signal.aborted) done();
        else io.signal.addEventListener("abort", done, { once: true });
      });
    } finally {
      io.resize.off("resize", resize);
      // Detaching closes only our connection: the container keeps running.
      sock.destroy();
    }
  }

  async portForward(sandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const s = this.deps.sandboxes.getSandbox(sandboxId);
    if (!s) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    if (s.state !== "ready") throw new FailedPrecondition(`pod sandbox "${sandboxId}" is not ready`);
    let tcp: Socket;
    try {
      tcp = s.netnsPath ? await connectInNetns(s.netnsPath, port) : await connectHost(port);
    } catch (err) {
      throw wrap(`connect to localhost:${port} in pod ${sandboxId}`, err);
    }
    await pipeBothWays(conn, tcp, signal);
  }
}

function connectHost(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Copies both ways (half-closes carried across) until the TCP side closes or the client goes away. */
export function pipeBothWays(conn: Duplex, tcp: Socket, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    tcp.on("error", () => undefined);
    conn.on("error", () => undefined);
    conn.pipe(tcp);
    tcp.pipe(conn);
    const done = () => {
      signal.removeEventListener("abort", done);
      tcp.destroy();
      resolve();
    };
    tcp.once("close", done);
    conn.once("close", done);
    if (signal.aborted) done();
    else signal.addEventListener("abort", done, { once: true });
  });
}

/** Writes one line to a conmon control fifo without blocking when no conmon reads it. */
async function writeControl(fifo: string, line: string): Promise<void> {
  const fh = await open(fifo, fsc.O_WRONLY | fsc.O_NONBLOCK);
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}
