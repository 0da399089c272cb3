import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  FrameReader, SpdyProtocolError, decodeHeaderBlock, encodeData, encodeGoaway, encodeHeaderBlock, encodePing,
  encodeRstStream, encodeSettings, encodeSynReply, encodeSynStream, encodeWindowUpdate, type Frame,
} from "./spdy-frames.js";

function readAll(bytes: Buffer, chunk = bytes.length): Frame[] {
  const r = new FrameReader();
  const out: Frame[] = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    r.push(bytes.subarray(i, i + chunk));
    for (let f = r.next(); f; f = r.next()) out.push(f);
  }
  return out;
}

describe("SPDY/3.1 frames", () => {
  const cases: Array<[string, Buffer, Partial<Frame>]> = [
    ["DATA with FIN", encodeData(5, 1, Buffer.from("hi")), { type: "data", streamId: 5, flags: 1, data: Buffer.from("hi") }],
    ["empty DATA", encodeData(0x7fffffff, 0, Buffer.alloc(0)), { type: "data", streamId: 0x7fffffff, flags: 0, data: Buffer.alloc(0) }],
    ["SYN_STREAM", encodeSynStream(3, 1, 7, 2, Buffer.from("hb")), { type: "syn_stream", streamId: 3, associatedId: 1, priority: 7, flags: 2, headerBlock: Buffer.from("hb") }],
    ["SYN_REPLY", encodeSynReply(3, 0, Buffer.from("x")), { type: "syn_reply", streamId: 3, flags: 0, headerBlock: Buffer.from("x") }],
    ["RST_STREAM", encodeRstStream(9, 5), { type: "rst_stream", streamId: 9, status: 5 }],
    ["SETTINGS", encodeSettings([{ id: 7, value: 1000 }, { flags: 1, id: 4, value: 100 }]), { type: "settings", flags: 0, entries: [{ flags: 0, id: 7, value: 1000 }, { flags: 1, id: 4, value: 100 }] }],
    ["PING", encodePing(0xfffffffe), { type: "ping", id: 0xfffffffe }],
    ["GOAWAY", encodeGoaway(11, 1), { type: "goaway", lastGoodStreamId: 11, status: 1 }],
    ["WINDOW_UPDATE", encodeWindowUpdate(0, 65536), { type: "window_update", streamId: 0, delta: 65536 }],
  ];
  for (const [name, bytes, want] of cases) {
    test(`${name} round-trips, whole and byte by byte`, () => {
      assert.deepEqual(readAll(bytes), [want]);
      assert.deepEqual(readAll(bytes, 1), [want]);
    });
  }

  test("control frame layout: C bit, version 3, type, flags and 24-bit length", () => {
    const b = encodeRstStream(1, 2);
    assert.deepEqual([...b.subarray(0, 8)], [0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08]);
    const d = encodeData(1, 1, Buffer.from("abc"));
    assert.deepEqual([...d.subarray(0, 8)], [0, 0, 0, 1, 1, 0, 0, 3]);
  });

  test("several frames in one chunk come out in order", () => {
    const bytes = Buffer.concat([encodePing(1), encodeData(1, 0, Buffer.from("a")), encodeRstStream(1, 5)]);
    assert.deepEqual(readAll(bytes).map((f) => f.type), ["ping", "data", "rst_stream"]);
  });

  test("bad input: other versions, short frames, oversize frames", () => {
    const v2 = encodePing(1);
    v2.writeUInt16BE(0x8002, 0);
    assert.throws(() => readAll(v2), (e: SpdyProtocolError) => /version 2/.test(e.message));
    const shortRst = Buffer.from([0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1]);
    assert.throws(() => readAll(shortRst), SpdyProtocolError);
    const r = new FrameReader(1024);
    r.push(encodeData(1, 0, Buffer.alloc(2000)));
    assert.throws(() => r.next(), /exceeds the 1024-byte limit/);
    const unknown = Buffer.from([0x80, 3, 0, 0x42, 0, 0, 0, 1, 9]);
    assert.equal(readAll(unknown)[0]!.type, "unknown");
  });

  test("header blocks: lowercase names, NUL-joined values, malformed blocks refused", () => {
    const b = encodeHeaderBlock([["streamType", "stdout"], ["port", "80"], ["x", "a\0b"]]);
    assert.deepEqual([...decodeHeaderBlock(b)], [["streamtype", "stdout"], ["port", "80"], ["x", "a\0b"]]);
    assert.deepEqual([...decodeHeaderBlock(encodeHeaderBlock([]))], []);
    assert.throws(() => decodeHeaderBlock(b.subarray(0, b.length - 1)), /truncated/);
    assert.throws(() => decodeHeaderBlock(Buffer.concat([b, Buffer.from([0])])), /trailing/);
    const upper = Buffer.from(b);
    upper[8] = "S".charCodeAt(0);
    assert.throws(() => decodeHeaderBlock(upper), /not lowercase/);
    assert.throws(() => decodeHeaderBlock(encodeHeaderBlock([["a", "1"], ["a", "2"]])), /twice/);
  });
});
