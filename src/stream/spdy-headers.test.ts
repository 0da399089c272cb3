import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import { describe, test } from "node:test";
import { SPDY3_DICTIONARY } from "./spdy-dictionary.js";
import { decodeHeaderBlock, encodeHeaderBlock } from "./spdy-frames.js";
import { HeaderCompressor, HeaderDecompressor, MAX_HEADER_BLOCK } from "./spdy-headers.js";

describe("SPDY/3 header compression", () => {
  test("the dictionary is the spec's 1423 bytes", () => {
    assert.equal(SPDY3_DICTIONARY.length, 1423);
    assert.equal(createHash("sha256").update(SPDY3_DICTIONARY).digest("hex"), "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02");
    assert.equal(SPDY3_DICTIONARY.subarray(0, 11).toString("latin1"), "\0\0\0\u0007options");
  });

  test("blocks share one zlib context per direction and decode in order", async () => {
    const c = new HeaderCompressor();
    const d = new HeaderDecompressor();
    const blocks = [0, 1, 2, 3, 4].map((i) => encodeHeaderBlock([["streamtype", i % 2 ? "stdout" : "stderr"], ["requestid", String(i)]]));
    const compressed = await Promise.all(blocks.map((b) => c.compress(b)));
    // Later blocks reuse earlier ones' text: the shared context makes them smaller than the first.
    assert.ok(compressed[4]!.length < compressed[0]!.length);
    for (let i = 0; i < blocks.length; i++) assert.deepEqual(await d.decompress(compressed[i]!), blocks[i]);
    c.close();
    d.close();
  });

  test("a block compressed without the dictionary context still decodes after the dictionary is asked for", async () => {
    // What a peer sends: zlib with the SPDY dictionary, sync-flushed.
    const z = zlib.createDeflate({ dictionary: SPDY3_DICTIONARY });
    const out: Buffer[] = [];
    z.on("data", (b: Buffer) => out.push(b));
    z.write(encodeHeaderBlock([["streamtype", "error"]]));
    await new Promise<void>((r) => z.flush(zlib.constants.Z_SYNC_FLUSH, () => r()));
    const d = new HeaderDecompressor();
    assert.deepEqual([...decodeHeaderBlock(await d.decompress(Buffer.concat(out)))], [["streamtype", "error"]]);
    d.close();
    z.close();
  });

  test("garbage and zlib bombs are protocol errors", async () => {
    const d = new HeaderDecompressor();
    await assert.rejects(d.decompress(Buffer.from("not zlib at all")), /decompress/);
    const c = new HeaderCompressor();
    const bomb = await c.compress(Buffer.alloc(MAX_HEADER_BLOCK + 10));
    await assert.rejects(new HeaderDecompressor().decompress(bomb), /exceeds/);
    c.close();
  });
});
