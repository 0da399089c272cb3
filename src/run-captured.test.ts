import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isLive, readProcStat } from "./proc.js";
import { runCaptured } from "./run-captured.js";

describe("runCaptured (posix_spawn through the addon; node's spawn for bare names)", () => {
  test("exit code, both outputs (final newline trimmed) and stdin", async () => {
    const r = await runCaptured("/bin/sh", ["-c", "cat; echo to-err >&2; exit 3"], { input: "hello\n", timeoutMs: 5000 });
    assert.deepEqual({ out: r.stdout, err: r.stderr, code: r.exitCode, failed: r.failed, why: r.failedWhy }, { out: "hello", err: "to-err", code: 3, failed: true, why: undefined });
    const ok = await runCaptured("/bin/echo", ["fine"], { timeoutMs: 5000 });
    assert.equal(ok.failed, false);
    assert.equal(ok.stdout, "fine");
  });

  test("a bare name is found on PATH", async () => {
    const r = await runCaptured("echo", ["via", "path"], { timeoutMs: 5000 });
    assert.equal(r.stdout, "via path");
  });

  test("the child starts with SIGPIPE at its default and in the environment it was given", async () => {
    const r = await runCaptured("/bin/sh", ["-c", "echo $ONLY; grep SigIgn /proc/self/status"], { env: { ONLY: "this" }, timeoutMs: 5000 });
    const [only, sigIgn] = r.stdout.split("\n");
    assert.equal(only, "this");
    // Bit 13 (SIGPIPE) is not ignored; berthd's node ignores it.
    assert.equal((BigInt(`0x${sigIgn!.split(/\s+/)[1]}`) >> 12n) & 1n, 0n, sigIgn);
  });

  test("the timeout kills; output over the cap kills; a missing program is a failure, not a throw", async () => {
    const slow = await runCaptured("/bin/sleep", ["10"], { timeoutMs: 100 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.failed, true);
    assert.equal(slow.exitCode, null);
    const loud = await runCaptured("/usr/bin/yes", [], { timeoutMs: 5000, maxOutput: 1 << 16 });
    assert.match(loud.failedWhy ?? "", /stdout exceeded 65536 bytes/);
    assert.ok(loud.stdout.length <= 1 << 16);
    const missing = await runCaptured("/nonexistent/prog", [], { timeoutMs: 5000 });
    assert.equal(missing.failed, true);
    assert.match(missing.failedWhy ?? "", /nonexistent\/prog: No such file/);
  });

  test("the timeout kills what a hung script started too, and the call returns though a child held its output", async () => {
    const started = Date.now();
    const r = await runCaptured("/bin/sh", ["-c", "sleep 30 & echo $! ; wait"], { timeoutMs: 300 });
    assert.equal(r.timedOut, true);
    assert.ok(Date.now() - started < 5000, `returned after ${Date.now() - started} ms`);
    const child = Number(r.stdout.trim());
    assert.ok(child > 0, r.stdout);
    await new Promise((res) => setTimeout(res, 100));
    const stat = await readProcStat(child);
    assert.ok(!isLive(stat), `the script's sleep (${child}) still runs: ${JSON.stringify(stat)}`);
  });
});
