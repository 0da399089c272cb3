import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { LayerDecoder, OUT_CREDIT } from "./decode.js";

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

function pieces(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

async function decode(input: Buffer, gzip: boolean, opts: { delayMs?: number } = {}): Promise<{ out: Buffer; digests: { compressed: string; diff: string }; maxAhead: number }> {
  const d = new LayerDecoder(gzip, 256 * 1024);
  const parts: Buffer[] = [];
  let maxAhead = 0;
  await pipeline(pieces(input, 64 * 1024), d, async (s: AsyncIterable<Buffer>) => {
    for await (const c of s) {
      parts.push(c);
      maxAhead = Math.max(maxAhead, d.readableLength);
      if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    }
  });
  return { out: Buffer.concat(parts), digests: d.digests(), maxAhead };
}

test("gzip: the tar comes back whole with both digests", async () => {
  const raw = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20, 7)]);
  const gz = gzipSync(raw);
  const { out, digests } = await decode(gz, true);
  assert.ok(out.equals(raw));
  assert.equal(digests.compressed, sha(gz));
  assert.equal(digests.diff, sha(raw));
});

test("uncompressed: the bytes pass through, one digest for both", async () => {
  const raw = randomBytes((5 << 20) + 123);
  const { out, digests } = await decode(raw, false);
  assert.ok(out.equals(raw));
  assert.equal(digests.compressed, sha(raw));
  assert.equal(digests.diff, sha(raw));
});

test("corrupt and truncated gzip fail with zlib's code", async () => {
  const gz = gzipSync(randomBytes(1 << 20));
  const bad = Buffer.from(gz);
  bad.fill(0x55, 100, 4000);
  await assert.rejects(decode(bad, true), (err: NodeJS.ErrnoException) => typeof err.code === "string" && err.code.startsWith("Z_"));
  await assert.rejects(decode(gz.subarray(0, gz.length - 1000), true), (err: NodeJS.ErrnoException) => typeof err.code === "string" && err.code.startsWith("Z_"));
});

test("a slow reader holds back a gzip bomb: the backlog stays within the credits", async () => {
  // 64 MiB of zeros compress to about 64 KiB.
  const gz = gzipSync(Buffer.alloc(64 << 20));
  const { out, maxAhead } = await decode(gz, true, { delayMs: 1 });
  assert.equal(out.length, 64 << 20);
  assert.ok(maxAhead <= OUT_CREDIT + (1 << 20), `backlog ${maxAhead}`);
});

test("concurrent streams share the worker without mixing bytes", async () => {
  const raws = [0, 1, 2, 3].map((i) => Buffer.concat([randomBytes(1 << 20), Buffer.alloc(i << 20, i)]));
  const results = await Promise.all(raws.map((r, i) => decode(i % 2 ? r : gzipSync(r), i % 2 === 0)));
  for (const [i, r] of results.entries()) assert.ok(r.out.equals(raws[i]!), `stream ${i}`);
});

test("a stream destroyed midway leaves the worker usable", async () => {
  const d = new LayerDecoder(true, 256 * 1024);
  d.write(gzipSync(randomBytes(2 << 20)).subarray(0, 500_000));
  d.destroy();
  const raw = randomBytes(1 << 20);
  const { out } = await decode(gzipSync(raw), true);
  assert.ok(out.equals(raw));
});

test("uncompressed with a slow reader: the writer is never left waiting", async () => {
  const raw = randomBytes(40 << 20);
  const { out } = await decode(raw, false, { delayMs: 2 });
  assert.ok(out.equals(raw));
});
