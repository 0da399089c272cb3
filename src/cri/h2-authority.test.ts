import assert from "node:assert/strict";
import { test } from "node:test";
import { ClientFrameReader, huffmanDecode, scanHeaderBlock } from "./h2-authority.js";

test("Huffman decoding matches RFC 7541 C.4.1", () => {
  assert.equal(huffmanDecode(Buffer.from("f1e3c2e5f23a6ba0ab90f4ff", "hex")).toString(), "www.example.com");
  assert.equal(huffmanDecode(Buffer.from("a8eb10649cbf", "hex")).toString(), "no-cache");
  assert.throws(() => huffmanDecode(Buffer.from("f1e3c2e5f23a6ba0ab90f400", "hex")), /Huffman/);
});

// ":authority" literal with incremental indexing, static name index 1, raw value.
function authorityLiteral(value: string): Buffer {
  return Buffer.concat([Buffer.from([0x41, value.length]), Buffer.from(value)]);
}

test("an invalid :authority is replaced by a valid value of the same length; other fields are untouched", () => {
  const path = "/tmp/x/berth.sock";
  const block = Buffer.concat([Buffer.from([0x83, 0x86]), authorityLiteral(path), Buffer.from([0x40, 2, 0x61, 0x62, 1, 0x63])]);
  const scan = scanHeaderBlock(block);
  assert.equal(scan.authority, path);
  assert.equal(scan.block.length, block.length);
  const value = scan.block.subarray(4, 4 + path.length).toString();
  assert.equal(value.length, path.length);
  assert.match(value, /^localhost-+$/);
  assert.deepEqual(scan.block.subarray(0, 3), block.subarray(0, 3));
  assert.deepEqual(scan.block.subarray(4 + path.length), block.subarray(4 + path.length));
});

test("a valid :authority (raw or Huffman) is left as it is", () => {
  const raw = Buffer.concat([Buffer.from([0x82]), authorityLiteral("localhost")]);
  assert.deepEqual(scanHeaderBlock(raw), { authority: "localhost", block: raw });
  const huff = Buffer.concat([Buffer.from([0x41, 0x80 | 12]), Buffer.from("f1e3c2e5f23a6ba0ab90f4ff", "hex")]);
  const scan = scanHeaderBlock(huff);
  assert.equal(scan.authority, "www.example.com");
  assert.deepEqual(scan.block, huff);
});

test("header blocks split over CONTINUATION frames and padded HEADERS are reassembled", () => {
  const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const blocks: Buffer[] = [];
  const reader = new ClientFrameReader((b) => {
    blocks.push(b);
    return b;
  });
  const block = Buffer.concat([Buffer.from([0x83]), authorityLiteral("localhost")]);
  const frame = (type: number, flags: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(1, 5);
    return Buffer.concat([h, payload]);
  };
  const settings = frame(0x4, 0, Buffer.alloc(0));
  const headers = frame(0x1, 0x8, Buffer.concat([Buffer.from([2]), block.subarray(0, 4), Buffer.alloc(2)]));
  const cont = frame(0x9, 0x4, block.subarray(4));
  const all = Buffer.concat([preface, settings, headers, cont]);
  let out = Buffer.alloc(0);
  for (let i = 0; i < all.length; i += 7) out = Buffer.concat([out, reader.push(all.subarray(i, i + 7))]);
  assert.deepEqual(blocks, [block]);
  assert.deepEqual(out.subarray(0, 24 + 9), Buffer.concat([preface, settings]));
  const h = out.subarray(33);
  assert.equal(h[3], 0x1);
  assert.equal(h[4], 0x4, "one HEADERS frame with END_HEADERS, no padding");
  assert.deepEqual(h.subarray(9), block);
});
