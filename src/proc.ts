// The one reader of /proc/PID/stat (proc(5)) in berth's TypeScript: the runtime, the tests and the
// benchmark ask here for a process's name, state, parent, CPU time and start time. (The addon keeps
// its own C reader of the start time: signalProcess must check it after pinning the pid with a pidfd.)
import { closeSync, openSync, readSync } from "node:fs";

/** The /proc/PID/stat fields berth reads. */
export interface ProcStat {
  pid: number;
  /** The command name (at most 15 bytes; it may hold spaces and parentheses). */
  comm: string;
  /** R, S, D, Z (zombie), X (dead), T, t, I ... */
  state: string;
  ppid: number;
  /** User and system CPU time, in clock ticks (USER_HZ). */
  utimeTicks: number;
  stimeTicks: number;
  /** Field 22, clock ticks after boot, as the kernel wrote it: with the pid it names one process for good. */
  startTime: string;
}

/** Clock ticks per second in /proc: 100 on every Linux ABI berth runs on. */
export const USER_HZ = 100;

/** Parses a /proc/PID/stat text; undefined when it is not one (empty: the process is gone). */
export function parseProcStat(text: string): ProcStat | undefined {
  // comm is the only field that may hold spaces: it runs from the first " (" to the last ")".
  const open = text.indexOf(" (");
  const close = text.lastIndexOf(")");
  if (open <= 0 || close < open) return undefined;
  // From field 3 (state) on, after the space that follows ")".
  const f = text.slice(close + 2).split(" ");
  const pid = Number(text.slice(0, open));
  const ppid = Number(f[1]);
  const utimeTicks = Number(f[11]);
  const stimeTicks = Number(f[12]);
  const startTime = f[19] ?? "";
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || !/^\d+$/.test(startTime)) return undefined;
  return { pid, comm: text.slice(open + 2, close), state: f[0] ?? "", ppid, utimeTicks, stimeTicks, startTime };
}

let scratch = Buffer.allocUnsafe(4096);

/**
 * A /proc (or cgroup, sysfs) file's text, read synchronously; undefined when it cannot be read (the process is
 * gone). procfs answers from kernel memory and never waits on a disk, and a promise readFile
 * costs about ten times the read itself (open, fstat, read, close: four trips to the thread
 * pool, and a 64 KiB buffer for a file whose size says 0), which made it most of what a
 * ContainerStatus or an exit sweep did. Only for kernel pseudo-files (procfs, cgroupfs, sysfs):
 * a real file system can block.
 */
export function readProcText(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    let got = 0;
    for (;;) {
      if (got === scratch.length) {
        const bigger = Buffer.allocUnsafe(scratch.length * 2);
        scratch.copy(bigger, 0, 0, got);
        scratch = bigger;
      }
      const n = readSync(fd, scratch, got, scratch.length - got, null);
      if (n <= 0) break;
      got += n;
    }
    const text = scratch.toString("utf8", 0, got);
    // A status with thousands of groups grew it: not kept.
    if (scratch.length > 65536) scratch = Buffer.allocUnsafe(4096);
    return text;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** The stat of process `pid`, read now; undefined when there is no such process. */
export function procStat(pid: number): ProcStat | undefined {
  if (!(pid > 0)) return undefined;
  return parseProcStat(readProcText(`/proc/${pid}/stat`) ?? "");
}

/** procStat for async callers (the read is synchronous: see readProcText). */
export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  return procStat(pid);
}

/** True for a process that still runs: neither a zombie waiting to be reaped nor dead. */
export function isLive(stat: ProcStat | undefined): stat is ProcStat {
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** True while `pid` runs (not a zombie) and, with `startTime`, is still the process that started then: pids get reused. */
export async function processRunning(pid: number, startTime?: string): Promise<boolean> {
  const stat = await readProcStat(pid);
  return isLive(stat) && (startTime === undefined || stat.startTime === startTime);
}

/** When `pid` started, in ns since the epoch (its start ticks after boot + the boot time in /proc/stat). */
export async function processStartNs(pid: number): Promise<bigint | undefined> {
  const stat = await readProcStat(pid);
  const btime = Number(/^btime (\d+)$/m.exec(readProcText("/proc/stat") ?? "")?.[1]);
  if (stat === undefined || !Number.isFinite(btime)) return undefined;
  return BigInt(btime) * 1_000_000_000n + BigInt(stat.startTime) * (1_000_000_000n / BigInt(USER_HZ));
}
