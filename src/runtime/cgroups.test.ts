import assert from "node:assert/strict";
import { test } from "node:test";
import { countLines, keyedValue, parseBlkio, parseIoStat, parsePressure, wholeIn, wholeOf } from "./cgroups.js";

test("parseBlkio: v1 throttle files, bytes and operations per device; Total, Sync and other lines ignored", () => {
  const bytes = "254:0 Read 4096\n254:0 Write 8388608\n254:0 Sync 8392704\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 8392704\n8:16 Write 512\nTotal 8393216\n";
  const ops = "254:0 Read 1\n254:0 Write 8\n254:0 Total 9\nTotal 9\n";
  assert.deepEqual(parseBlkio(bytes, ops), [
    { major: 254, minor: 0, readBytes: 4096n, writeBytes: 8388608n, reads: 1n, writes: 8n },
    { major: 8, minor: 16, readBytes: 0n, writeBytes: 512n, reads: 0n, writes: 0n },
  ]);
  assert.deepEqual(parseBlkio("Total 0\n", undefined), []);
  assert.deepEqual(parseBlkio(undefined, undefined), []);
});

test("parseIoStat: v2 io.stat key=value lines", () => {
  assert.deepEqual(parseIoStat("8:0 rbytes=1024 wbytes=2048 rios=3 wios=4 dbytes=0 dios=0\n259:1 rbytes=5 wbytes=6 rios=7 wios=8\n"), [
    { major: 8, minor: 0, readBytes: 1024n, writeBytes: 2048n, reads: 3n, writes: 4n },
    { major: 259, minor: 1, readBytes: 5n, writeBytes: 6n, reads: 7n, writes: 8n },
  ]);
  assert.deepEqual(parseIoStat(""), []);
});

test("parsePressure: the some and full totals (microseconds); absent file, absent line", () => {
  const cpu = "some avg10=0.00 avg60=0.12 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n";
  assert.deepEqual(parsePressure(cpu), { someUs: 123456n, fullUs: 789n });
  assert.deepEqual(parsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"), { someUs: 5n, fullUs: 0n });
  assert.equal(parsePressure(undefined), undefined);
});

test("keyedValue: a key at a line start only (not inside total_rss or rss_huge), whole numbers only", () => {
  const stat = "cache 4096\nrss 8192\nrss_huge 0\nmapped_file 12\npgfault 77\ntotal_rss 9000\ntotal_pgfault 88\ntotal_inactive_file 5\nhierarchical_memory_limit 9223372036854771712\n";
  assert.equal(keyedValue(stat, "cache"), 4096n);
  assert.equal(keyedValue(stat, "rss"), 8192n);
  assert.equal(keyedValue(stat, "total_rss"), 9000n);
  assert.equal(keyedValue(stat, "pgfault"), 77n);
  assert.equal(keyedValue(stat, "total_pgfault"), 88n);
  assert.equal(keyedValue(stat, "total_inactive_file"), 5n);
  assert.equal(keyedValue(stat, "hierarchical_memory_limit"), 9223372036854771712n);
  assert.equal(keyedValue(stat, "inactive_file"), undefined);
  assert.equal(keyedValue(stat, "swap"), undefined);
  assert.equal(keyedValue(undefined, "rss"), undefined);
  // The last line without its newline; a value that is not a number.
  assert.equal(keyedValue("usage_usec 10\nuser_usec 7", "user_usec"), 7n);
  assert.equal(keyedValue("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), 3n);
  assert.equal(keyedValue("max max\n", "max"), undefined);
});

test("wholeOf, wholeIn: one-number files, trailing newline and spaces; max, -1 and empty are not numbers", () => {
  assert.equal(wholeOf("123\n"), 123n);
  assert.equal(wholeOf(" 18446744073709551615 \n"), 18446744073709551615n);
  assert.equal(wholeOf("max\n"), undefined);
  assert.equal(wholeOf("-1\n"), undefined);
  assert.equal(wholeOf("\n"), undefined);
  assert.equal(wholeOf(undefined), undefined);
  assert.equal(wholeIn("100000 max", 0, 6), 100000n);
  assert.equal(wholeIn("100000 max", 7, 10), undefined);
});

test("countLines: the pids in cgroup.procs", () => {
  assert.equal(countLines("1\n22\n333\n"), 3);
  assert.equal(countLines("1\n22"), 2);
  assert.equal(countLines(""), 0);
  assert.equal(countLines("\n"), 0);
  assert.equal(countLines(undefined), 0);
});
