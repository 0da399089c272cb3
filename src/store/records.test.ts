import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { KeyedLock } from "./keyed-lock.js";
import { decodeRecord, encodeRecord, RecordStore } from "./records.js";

test("records round-trip, bigint included", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-store-"));
  try {
    const s = new RecordStore<{ a: number; t: bigint }>(dir);
    await s.init();
    await s.put("abc", { a: 1, t: 1795640200097000000n });
    assert.deepEqual(await s.get("abc"), { a: 1, t: 1795640200097000000n });
    assert.equal(await s.get("nope"), undefined);
    await s.delete("abc");
    await s.delete("abc");
    assert.equal(await s.get("abc"), undefined);
    await assert.rejects(s.put("../escape", { a: 1, t: 0n }), /invalid record id/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a torn or corrupt record is quarantined, temp files removed, the rest loads", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-store-"));
  try {
    const s = new RecordStore<{ n: number }>(dir);
    await s.init();
    await s.put("good", { n: 1 });
    await s.put("torn", { n: 2 });
    const full = await readFile(path.join(dir, "torn.json"), "utf8");
    await writeFile(path.join(dir, "torn.json"), full.slice(0, full.length - 5));
    await s.put("flipped", { n: 3 });
    await writeFile(path.join(dir, "flipped.json"), (await readFile(path.join(dir, "flipped.json"), "utf8")).replace('"n":3', '"n":4'));
    await writeFile(path.join(dir, ".tmp-good.json.123"), "partial");
    const { records, problems } = await s.loadAll();
    assert.deepEqual([...records.keys()], ["good"]);
    assert.equal(problems.length, 2);
    assert.ok(problems.some((p) => p.file.endsWith("torn.json") && /truncated|checksum/.test(p.reason)));
    assert.ok(problems.some((p) => p.file.endsWith("flipped.json") && /checksum/.test(p.reason)));
    assert.deepEqual((await readdir(dir)).sort(), ["good.json", "quarantine"]);
    assert.equal((await readdir(path.join(dir, "quarantine"))).length, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("decodeRecord rejects foreign text", () => {
  assert.throws(() => decodeRecord("{}"), /not a berth record/);
  assert.deepEqual(decodeRecord(encodeRecord({ x: [1, "2"] })), { x: [1, "2"] });
});

test("KeyedLock serializes one key and runs different keys in parallel", async () => {
  const lock = new KeyedLock();
  const order: string[] = [];
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await Promise.all([
    lock.run("a", async () => { order.push("a1+"); await sleep(30); order.push("a1-"); }),
    lock.run("a", async () => { order.push("a2+"); await sleep(1); order.push("a2-"); }),
    lock.run("b", async () => { order.push("b+"); await sleep(5); order.push("b-"); }),
  ]);
  assert.deepEqual(order.filter((x) => x.startsWith("a")), ["a1+", "a1-", "a2+", "a2-"]);
  assert.ok(order.indexOf("b+") < order.indexOf("a1-"));
});
