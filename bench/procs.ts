// Finding the benchmark's processes in /proc and reading their memory (PSS).
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { readProcStat, USER_HZ } from "../src/proc.js";

export interface ProcInfo {
  pid: number;
  ppid: number;
  argv: string[];
}

async function readProc(pid: number): Promise<ProcInfo | undefined> {
  try {
    const [cmdline, stat] = await Promise.all([readFile(`/proc/${pid}/cmdline`, "utf8"), readProcStat(pid)]);
    if (stat === undefined) return undefined;
    return { pid, ppid: stat.ppid, argv: cmdline.split("\0").filter((s, i, a) => s !== "" || i < a.length - 1) };
  } catch {
    return undefined; // gone, or a kernel thread
  }
}

export async function listProcs(): Promise<ProcInfo[]> {
  const names = await readdir("/proc");
  const all = await Promise.all(names.filter((n) => /^\d+$/.test(n)).map((n) => readProc(Number(n))));
  return all.filter((p): p is ProcInfo => p !== undefined && p.argv.length > 0);
}

/** Processes whose program is `program` (basename of argv[0]) and whose command line mentions `needle`. */
export async function findProcs(program: string, needle: string): Promise<ProcInfo[]> {
  return (await listProcs()).filter((p) => path.basename(p.argv[0]!) === program && p.argv.some((a) => a.includes(needle)));
}

/** Processes whose command line mentions `needle` anywhere (for cleanup of stragglers). */
export async function procsMentioning(needle: string): Promise<ProcInfo[]> {
  return (await listProcs()).filter((p) => p.pid !== process.pid && p.argv.some((a) => a.includes(needle)));
}

/** Every descendant of `pid` (not including it). */
export function descendants(all: readonly ProcInfo[], pid: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  const queue = [pid];
  while (queue.length) {
    const parent = queue.shift()!;
    for (const p of all) if (p.ppid === parent) { out.push(p); queue.push(p.pid); }
  }
  return out;
}

/** Proportional set size of one process in KiB (0 when it is gone). */
export async function pssKiB(pid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
    const m = /^Pss:\s+(\d+) kB/m.exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export async function totalPssKiB(pids: readonly number[]): Promise<number> {
  const values = await Promise.all(pids.map(pssKiB));
  return values.reduce((a, b) => a + b, 0);
}

/** CPU time (utime + stime) a process has used so far, in ms; 0 when it is gone. */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await readProcStat(pid);
  return stat === undefined ? 0 : ((stat.utimeTicks + stat.stimeTicks) * 1000) / USER_HZ;
}
