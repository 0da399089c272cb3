import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { procStartTime } from "./native/native.js";
import { isLive, parseProcStat, processRunning, processStartNs, readProcStat, readProcText, type ProcStat } from "./proc.js";

/** A stat line as the kernel writes it, with the fields berth reads set and the rest zero. */
function statLine(pid: number, comm: string, state: string, ppid: number, utime: number, stime: number, start: number): string {
  const f = new Array<string>(52).fill("0");
  [f[0], f[1], f[2], f[3], f[13], f[14], f[21]] = [String(pid), `(${comm})`, state, String(ppid), String(utime), String(stime), String(start)];
  return `${f.join(" ")}\n`;
}

describe("parseProcStat", () => {
  const cases: Array<[string, string, Partial<ProcStat> | undefined]> = [
    ["a plain name", statLine(42, "sleep", "S", 1, 7, 3, 123456), { pid: 42, comm: "sleep", state: "S", ppid: 1, utimeTicks: 7, stimeTicks: 3, startTime: "123456" }],
    ["spaces and parentheses in the name", statLine(7, "a) (b c) R 9", "Z", 2, 0, 0, 99), { pid: 7, comm: "a) (b c) R 9", state: "Z", ppid: 2, startTime: "99" }],
    ["an empty name", statLine(8, "", "R", 3, 1, 1, 5), { pid: 8, comm: "", state: "R", ppid: 3 }],
    ["a newline in the name", statLine(9, "x\ny", "S", 4, 0, 0, 6), { comm: "x\ny", ppid: 4, startTime: "6" }],
    ["empty (the process is gone)", "", undefined],
    ["no closing parenthesis", "42 (sleep S 1 2 3", undefined],
    ["cut short before the start time", "42 (sleep) S 1 2 3 4 5 6 7 8 9 10 11 12\n", undefined],
    ["not a pid first", "x (sleep) S 1\n", undefined],
  ];
  for (const [name, text, want] of cases) {
    test(name, () => {
      const got = parseProcStat(text);
      if (want === undefined) return assert.equal(got, undefined);
      assert.ok(got, "parsed");
      for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof ProcStat], v, k);
    });
  }
});

describe("readProcStat on real processes", () => {
  test("a child named with spaces and parentheses: its name, parent and start time (the addon agrees)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-proc-"));
    try {
      // The kernel takes comm from the file name that was executed.
      const odd = path.join(dir, "a (b) c");
      await symlink("/bin/sleep", odd);
      const child = spawn(odd, ["30"], { stdio: "ignore" });
      await new Promise((r) => child.once("spawn", r));
      const exited = new Promise((r) => child.once("exit", r));
      const stat = await readProcStat(child.pid!);
      assert.ok(stat, "the child is there");
      assert.equal(stat.comm, "a (b) c");
      assert.equal(stat.ppid, process.pid);
      assert.equal(stat.pid, child.pid);
      assert.ok(isLive(stat), stat.state);
      assert.equal(stat.startTime, procStartTime(child.pid!), "the addon's C reader gives the same start time");
      const startNs = await processStartNs(child.pid!);
      assert.ok(startNs !== undefined);
      const skewMs = Math.abs(Number(startNs / 1_000_000n) - Date.now());
      assert.ok(skewMs < 5_000, `started ${skewMs} ms away from now`);
      assert.equal(await processRunning(child.pid!), true);
      assert.equal(await processRunning(child.pid!, stat.startTime), true);
      assert.equal(await processRunning(child.pid!, String(Number(stat.startTime) + 1)), false, "another start time: a reused pid");
      child.kill("SIGKILL");
      await exited;
      assert.equal(await readProcStat(child.pid!), undefined, "reaped: gone");
      assert.equal(await processRunning(child.pid!, stat.startTime), false);
      assert.equal(await processStartNs(child.pid!), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a zombie is there but not live; pid 0 and -1 are nobody", async () => {
    // sh starts a child that exits soon, then becomes a sleep that never reaps it.
    const sh = spawn("/bin/sh", ["-c", "sleep 0.1 & echo $!; exec sleep 30"], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise((r) => sh.once("exit", r));
    try {
      const zombie = Number(await new Promise<string>((r) => sh.stdout!.once("data", (d: Buffer) => r(String(d)))));
      let stat = await readProcStat(zombie);
      for (let i = 0; i < 100 && stat?.state !== "Z"; i++) {
        await new Promise((r) => setTimeout(r, 20));
        stat = await readProcStat(zombie);
      }
      assert.ok(stat, "the zombie still has its /proc entry");
      assert.equal(stat.state, "Z");
      assert.equal(stat.ppid, sh.pid);
      assert.equal(isLive(stat), false);
      assert.equal(await processRunning(zombie), false, "a zombie does not run");
    } finally {
      sh.kill("SIGKILL");
      await exited;
    }
    assert.equal(await readProcStat(0), undefined);
    assert.equal(await readProcStat(-1), undefined);
    assert.equal(await processRunning(0), false);
    assert.equal(isLive(undefined), false);
  });
});

describe("readProcText", () => {
  test("reads what readFile reads, a file larger than its first buffer included; undefined for a gone file", async () => {
    const { readFile } = await import("node:fs/promises");
    const status = readProcText("/proc/self/status");
    assert.match(status ?? "", /^Uid:\s+\d+/m);
    // smaps of a node process runs to hundreds of KiB: the buffer grows, then shrinks back.
    const smaps = readProcText("/proc/self/smaps") ?? "";
    assert.ok(smaps.length > 65536, `smaps is ${smaps.length} characters`);
    assert.equal(smaps.split("\n")[0], (await readFile("/proc/self/smaps", "utf8")).split("\n")[0]);
    assert.equal(readProcText("/proc/self/stat")?.split(" ")[0], String(process.pid));
    assert.equal(readProcText("/proc/0/status"), undefined);
    assert.equal(readProcText("/proc/self/no-such-file"), undefined);
  });
});
