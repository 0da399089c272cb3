import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { execa } from "execa";
import { splitCriLog } from "./conmon.js";
import { readExecOutput } from "./exec-output.js";

const TS = "2024-01-02T03:04:05.123456789Z";

test("readExecOutput: the same streams as splitCriLog, each capped, across chunk boundaries", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-exec-out-"));
  try {
    let log = "";
    for (let i = 0; i < 60_000; i++) log += `${TS} ${i % 3 ? "stdout" : "stderr"} ${i % 7 ? "F" : "P"} line-${i}-${"z".repeat(i % 50)}\n`;
    const file = path.join(dir, "output.log");
    await writeFile(file, log);
    for (const cap of [100, 65_536, 1 << 30]) {
      const want = splitCriLog(Buffer.from(log), cap);
      const got = await readExecOutput(file, cap);
      assert.ok(got.stdout.equals(want.stdout), `stdout, cap ${cap}`);
      assert.ok(got.stderr.equals(want.stderr), `stderr, cap ${cap}`);
    }
    assert.deepEqual(await readExecOutput(path.join(dir, "missing"), 10), { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("readExecOutput: an endless log is read only up to its bound (readFile would never return)", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-exec-out-"));
  const fifo = path.join(dir, "output.log");
  await execa("mkfifo", [fifo]);
  // An endless stdout-only writer: stdout fills at the cap, stderr never does, so the byte bound ends the read.
  const writer = spawn("sh", ["-c", `yes '${TS} stdout F 0123456789abcdef' > ${fifo}`], { stdio: "ignore" });
  try {
    const got = await readExecOutput(fifo, 1 << 20, 8 << 20);
    assert.equal(got.stdout.length, 1 << 20);
    assert.equal(got.stderr.length, 0);
  } finally {
    writer.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
});
