// berthd's N-API addon (src/native/berth_native.c and the native_*.c files beside it, built by
// `make native`) and the one way berthd turns a raw fd from it into a Node stream.
import { closeSync } from "node:fs";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { Socket } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

interface Addon {
  openPty(): [number, number];
  setWindowSize(fd: number, rows: number, cols: number): void;
  makeRaw(fd: number): void;
  connectSeqpacket(socketPath: string): number;
  connectInNetns(netnsPath: string, port: number, ipv6: boolean, cb: (err: Error | null, fd?: number) => void): void;
  trimMalloc(): boolean;
  mountFs(source: string, target: string, fstype: string, flags: number, data: string, cwd: string, cb: (err: Error | null) => void): void;
  unmountFs(target: string, lazy: boolean, cb: (err: Error | null) => void): void;
  makeNode(path: string, mode: number, major: number, minor: number, cb: (err: Error | null) => void): void;
  setXattr(path: string, name: string, value: Buffer, cb: (err: Error | null) => void): void;
  pinNamespaces(netFile: string, ipcFile: string, utsFile: string, hostname: string, cb: (err: Error | null) => void): void;
  pinUserNamespace(userFile: string, uidMap: string, gidMap: string, netFile: string, ipcFile: string, utsFile: string, hostname: string, cb: (err: Error | null) => void): void;
  idmapMount(source: string, target: string, usernsFile: string, replace: boolean, cb: (err: Error | null) => void): void;
  procStartTime(pid: number): string | null;
  signalProcess(pid: number, startTime: string, signal: number): boolean;
  makePipe(): [number, number];
  spawnProcess(file: string, args: string[], env: string[], cwd: string, setsid: boolean, stdio: number[], onExit: (code: number, signal: number) => void): [number, number];
  pidfdSignal(pidfd: number, signal: number): boolean;
  watchExit(pid: number, onExit: () => void): number | null;
  cancelExitWatch(id: number): boolean;
  sendDatagram(socketPath: string, message: string): void;
  bindDatagram(socketPath: string): number;
  recvDatagram(fd: number): string | null;
  countFds(pids: number[], cb: (err: Error | null, counts?: number[]) => void): void;
}

let addon: Addon | undefined;

/** dist/native/berth-exec (src/native/berth_exec.c): the parent of ExecSync's processes. */
export function execHelperPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../native/berth-exec");
}

function load(): Addon {
  if (addon) return addon;
  // dist/src/native/native.js -> dist/native/berth_native.node
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../native/berth_native.node");
  try {
    addon = createRequire(import.meta.url)(file) as Addon;
  } catch (err) {
    throw new Error(`cannot load berth's native addon ${file} (run \`make build\`): ${(err as Error).message}`, { cause: err });
  }
  return addon;
}

/** A new pseudo-terminal: the master stays with berthd, the slave becomes a child's stdio. Both close-on-exec. */
export function openPty(): { master: number; slave: number } {
  const [master, slave] = load().openPty();
  return { master, slave };
}

/** Sets a pty's window size (TIOCSWINSZ). */
export function setWindowSize(fd: number, rows: number, cols: number): void {
  load().setWindowSize(fd, rows, cols);
}

/** Puts a pty in raw mode: bytes pass through untouched (no echo, no CR/LF translation). */
export function makeRaw(fd: number): void {
  load().makeRaw(fd);
}

/** Connects to a SOCK_SEQPACKET unix socket (any path length); returns the fd. */
export function connectSeqpacket(socketPath: string): number {
  return load().connectSeqpacket(socketPath);
}

/**
 * A TCP connection to localhost:port made inside the network namespace pinned at netnsPath
 * (127.0.0.1 first, then ::1 when IPv4 refuses). The socket lives in the pod's namespace while
 * berthd reads and writes it like any other.
 */
export async function connectInNetns(netnsPath: string, port: number): Promise<Socket> {
  const once = (ipv6: boolean) => new Promise<number>((resolve, reject) => {
    load().connectInNetns(netnsPath, port, ipv6, (err, fd) => (err ? reject(err) : resolve(fd!)));
  });
  let fd: number;
  try {
    fd = await once(false);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ECONNREFUSED") throw err;
    fd = await once(true).catch(() => Promise.reject(err));
  }
  return new Socket({ fd, readable: true, writable: true });
}

interface PipeHandle { open(fd: number): number }
type PipeCtor = new (type: number) => PipeHandle;

/**
 * Wraps an fd that net.Socket({fd}) refuses (a pty master is a "TTY", a SOCK_SEQPACKET socket is
 * "UNKNOWN") in a non-blocking libuv stream: tty.ReadStream would make pty writes blocking and
 * stall the event loop. libuv's pipe handle reads and writes any fd; each read of a seqpacket
 * socket yields exactly one packet, so 'data' events keep packet boundaries.
 * The socket owns the fd from here on: destroying it closes the fd.
 */
export function fdSocket(fd: number): Socket {
  const { Pipe, constants } = (process as unknown as { binding(name: string): { Pipe: PipeCtor; constants: { SOCKET: number } } }).binding("pipe_wrap");
  const handle = new Pipe(constants.SOCKET);
  const rc = handle.open(fd);
  if (rc !== 0) throw new Error(`cannot open fd ${fd} as a stream (uv error ${rc})`);
  return new Socket({ handle, readable: true, writable: true } as never);
}

/** malloc_trim(0): returns glibc's free heap pages to the kernel; true when some were released. */
export function trimMalloc(): boolean {
  return load().trimMalloc();
}

/** Open descriptors and, of those, sockets, summed over processes (a gone pid counts 0). */
export function countFds(pids: number[]): Promise<{ fds: number; sockets: number }> {
  return new Promise((resolve, reject) => load().countFds(pids, (err, counts) => {
    if (err) return reject(err);
    let fds = 0;
    let sockets = 0;
    for (let i = 0; i < counts!.length; i += 2) {
      fds += counts![i]!;
      sockets += counts![i + 1]!;
    }
    resolve({ fds, sockets });
  }));
}

/** mount(2) flags berth uses. */
export const MS = { RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8, BIND: 0x1000 } as const;

function done(start: (cb: (err: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => start((err) => (err ? reject(err) : resolve())));
}

/**
 * mount(2). Relative paths inside `data` (overlay's lowerdir) are resolved from `cwd` when it
 * is set; berthd's own working directory never changes.
 */
export function mountFs(m: { source: string; target: string; fstype: string; flags?: number; data?: string; cwd?: string }): Promise<void> {
  return done((cb) => load().mountFs(m.source, m.target, m.fstype, m.flags ?? 0, m.data ?? "", m.cwd ?? "", cb));
}

/** umount2(2) of `target`, never following a symlink there; `lazy` detaches a busy mount. */
export function unmountFs(target: string, lazy = false): Promise<void> {
  return done((cb) => load().unmountFs(target, lazy, cb));
}

/** mknod(2) of a device node or fifo (`mode` holds the S_IF* type) with exactly `mode`'s permission bits. */
export function makeNodeAt(file: string, mode: number, major = 0, minor = 0): Promise<void> {
  return done((cb) => load().makeNode(file, mode, major, minor, cb));
}

/** lsetxattr(2): the attribute of `file` itself, never of a symlink's target. */
export function setXattrNoFollow(file: string, name: string, value: Buffer): Promise<void> {
  return done((cb) => load().setXattr(file, name, value, cb));
}

/**
 * New network, IPC and/or UTS namespaces (the kinds given a file), each pinned by a bind mount
 * on its (existing) file; with a UTS file the hostname is set inside first.
 */
export function pinNewNamespaces(files: { net?: string; ipc?: string; uts?: string }, hostname: string): Promise<void> {
  return done((cb) => load().pinNamespaces(files.net ?? "", files.ipc ?? "", files.uts ?? "", hostname, cb));
}

/**
 * A new user namespace with `uidMap`/`gidMap` (/proc/PID/uid_map lines) written before it is
 * pinned on `files.user`, plus new network, IPC and/or UTS namespaces owned by it (the kinds
 * given a file), each pinned on its file; with a UTS file the hostname is set inside first.
 */
export function pinNewUserNamespace(files: { user: string; net?: string; ipc?: string; uts?: string }, uidMap: string, gidMap: string, hostname: string): Promise<void> {
  return done((cb) => load().pinUserNamespace(files.user, uidMap, gidMap, files.net ?? "", files.ipc ?? "", files.uts ?? "", hostname, cb));
}

/**
 * Attaches at `target` an idmapped clone (open_tree + mount_setattr(MOUNT_ATTR_IDMAP) +
 * move_mount) of the mount tree at `source`, mapped through the user namespace pinned at
 * `usernsFile`. `replace`: target is source, whose unmapped mount is detached for the clone.
 */
export function idmapMount(source: string, target: string, usernsFile: string, replace = false): Promise<void> {
  return done((cb) => load().idmapMount(source, target, usernsFile, replace, cb));
}

/** The start time of process `pid` (field 22 of /proc/PID/stat); undefined when there is no such process. */
export function procStartTime(pid: number): string | undefined {
  return load().procStartTime(pid) ?? undefined;
}

/**
 * Sends `signal` to `pid` through a pidfd if it is still the process that started at
 * `startTime`; false when that process is gone (exited, or the pid now names another).
 */
export function signalProcess(pid: number, startTime: string, signal: number): boolean {
  return load().signalProcess(pid, startTime, signal);
}

/**
 * Calls `onExit` from the event loop once process `pid` has exited (a zombie counts); the
 * result cancels the watch. The watch holds a pidfd, so it stays on the process it was opened
 * on even if the pid is reused. undefined: there is no process `pid`. A watch does not keep
 * berthd running.
 */
export function watchExit(pid: number, onExit: () => void): (() => void) | undefined {
  const a = load();
  const id = a.watchExit(pid, onExit);
  if (id === null) return undefined;
  return () => void a.cancelExitWatch(id);
}

/** A signal's number from a name ("SIGTERM", "TERM") or a number ("15"); undefined if unknown. */
export function signalNumber(name: string): number | undefined {
  if (/^\d+$/.test(name)) {
    const n = Number(name);
    return n >= 1 && n <= 64 ? n : undefined;
  }
  const up = name.toUpperCase();
  const signals = osConstants.signals as Record<string, number | undefined>;
  return signals[up] ?? signals[`SIG${up}`];
}

/** One fd of a child: /dev/null, a pipe the child reads ("in") or writes ("out"), or a parent fd passed as is. */
export type ChildStdio = "ignore" | "in" | "out" | number;

export interface SpawnedChild {
  pid: number;
  /** Per child fd: the parent's end of its pipe ("in": writable, "out": readable). */
  pipes: Array<Socket | undefined>;
  /** The exit code (null when killed) and the signal that killed it (null when it exited). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Signals the child through its pidfd (never a reused pid); false once it has exited. */
  kill(signal?: NodeJS.Signals): boolean;
}

const signalNames = new Map(Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]));

/**
 * Starts `file` (an absolute path) with posix_spawn: no copy of berthd's address space, as
 * libuv's fork makes (see native_spawn.c). `stdio[i]` is the child's fd i.
 */
export function spawnChild(o: { file: string; args: string[]; env: NodeJS.ProcessEnv; cwd?: string; setsid?: boolean; stdio: ChildStdio[] }): SpawnedChild {
  const addon = load();
  const parentEnds: Array<number | undefined> = [];
  const childEnds: number[] = [];
  const closeAll = (fds: Array<number | undefined>) => {
    for (const fd of fds) if (fd !== undefined && fd >= 0) closeSync(fd);
  };
  const stdio: number[] = [];
  try {
    for (const s of o.stdio) {
      if (s === "in" || s === "out") {
        const [r, w] = addon.makePipe();
        parentEnds.push(s === "in" ? w : r);
        childEnds.push(s === "in" ? r : w);
        stdio.push(s === "in" ? r : w);
      } else {
        parentEnds.push(undefined);
        stdio.push(s === "ignore" ? -1 : s);
      }
    }
  } catch (err) {
    closeAll([...parentEnds, ...childEnds]);
    throw err;
  }
  const env = Object.entries(o.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
  let settle!: (r: { code: number | null; signal: NodeJS.Signals | null }) => void;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => (settle = r));
  let pid: number;
  let pidfd: number;
  let gone = false;
  try {
    [pid, pidfd] = addon.spawnProcess(o.file, [o.file, ...o.args], env, o.cwd ?? "", o.setsid ?? false, stdio, (code, signal) => {
      gone = true;
      closeSync(pidfd);
      settle({ code: signal ? null : code, signal: signal ? signalNames.get(signal) ?? null : null });
    });
  } catch (err) {
    closeAll(parentEnds);
    throw err;
  } finally {
    closeAll(childEnds);
  }
  const pipes = parentEnds.map((fd, i) => (fd === undefined ? undefined : new Socket({ fd, readable: o.stdio[i] === "out", writable: o.stdio[i] === "in" })));
  return {
    pid,
    pipes,
    exited,
    kill: (signal = "SIGTERM") => !gone && addon.pidfdSignal(pidfd, osConstants.signals[signal]),
  };
}

/** Sends one datagram to a unix SOCK_DGRAM socket; a path starting with "@" is an abstract name. */
export function sendDatagram(socketPath: string, message: string): void {
  load().sendDatagram(socketPath, message);
}

/** A non-blocking SOCK_DGRAM socket bound at `socketPath` ("@name": abstract); the caller closes the fd. */
export function bindDatagram(socketPath: string): number {
  return load().bindDatagram(socketPath);
}

/** The next datagram waiting on a bound socket, or null when there is none. */
export function recvDatagram(fd: number): string | null {
  return load().recvDatagram(fd);
}
