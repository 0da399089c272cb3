import assert from "node:assert/strict";
import { test } from "node:test";
import { parseBlkio, parseIoStat, parsePressure } from "./cgroups.js";

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
