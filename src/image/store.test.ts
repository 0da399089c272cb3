import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ContentStore, sha256 } from "./content.js";
import { BLOB_RECHECK_MS, scanIfChanged } from "./store.js";

test("blob usage: answered from memory between berthd's own changes, which show at once; a hand edit shows after BLOB_RECHECK_MS", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-blob-usage-"));
  try {
    const content = new ContentStore(dir);
    await content.init();
    const put = async (text: string) => {
      const bytes = Buffer.from(text);
      await content.put(sha256(bytes), bytes, "test blob");
      return sha256(bytes);
    };
    const a = await put("first");
    let u = await scanIfChanged(content, undefined);
    assert.deepEqual([u.count, u.bytes], [1, 5]);
    // Too recent a dir mtime to trust: looked at again next time, still right.
    u = await scanIfChanged(content, u);
    assert.deepEqual([u.count, u.bytes], [1, 5]);

    const b = await put("second");
    u = await scanIfChanged(content, u);
    assert.deepEqual([u.count, u.bytes], [2, 11]);
    await content.delete(a);
    u = await scanIfChanged(content, u);
    assert.deepEqual([u.count, u.bytes], [1, 6]);

    // Settled (checked long after the change): the next ask does no I/O at all, so a file
    // written behind the store's back is not seen until the recheck is due.
    const settled = { ...u, dirId: "x", checkedAt: Date.now() };
    const hand = "c".repeat(64);
    await writeFile(path.join(dir, hand), "1234567");
    assert.equal(await scanIfChanged(content, settled), settled);
    u = await scanIfChanged(content, settled, Date.now() + BLOB_RECHECK_MS + 1);
    assert.deepEqual([u.count, u.bytes], [2, 13]);
    // The store's own change never waits for the recheck.
    await content.delete(b);
    u = await scanIfChanged(content, { ...u, checkedAt: Date.now() });
    assert.deepEqual([u.count, u.bytes], [1, 7]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
