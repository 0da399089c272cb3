// berth's HTTP/2 (h2.ts, hpack.ts) below the gRPC layer: HPACK against RFC 7541's own examples,
// then a GrpcServer on a unix socket driven by node's HTTP/2 client (flow control both ways,
// CONTINUATION, PING) and by raw frames (what goes out in one write, the connection errors).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ListContainersResponse, RuntimeServiceService, VersionRequest, VersionResponse } from "../gen/api.js";
import { HpackDecoder, HpackError, huffmanDecode, literal } from "./hpack.js";
import { GrpcServer, methodTable, type Call, type UnaryCall } from "./server.js";
import { encodeFrame, MAX_STREAMS } from "./h2.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("HPACK", () => {
  test("Huffman strings (RFC 7541 C.4)", () => {
    assert.equal(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")), "www.example.com");
    assert.equal(huffmanDecode(hex("a8eb 1064 9cbf")), "no-cache");
    assert.equal(huffmanDecode(hex("25a8 49e9 5ba9 7d7f")), "custom-key");
    assert.throws(() => huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff ff")), HpackError, "8 bits of padding");
    assert.throws(() => huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4fe")), HpackError, "padding that is not all ones");
  });

  test("three requests sharing a dynamic table (RFC 7541 C.4.1-C.4.3)", () => {
    const d = new HpackDecoder();
    assert.deepEqual({ ...d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")) }, { ":method": "GET", ":scheme": "http", ":path": "/", ":authority": "www.example.com" });
    assert.deepEqual({ ...d.decode(hex("8286 84be 5886 a8eb 1064 9cbf")) }, { ":method": "GET", ":scheme": "http", ":path": "/", ":authority": "www.example.com", "cache-control": "no-cache" });
    assert.deepEqual({ ...d.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")) }, { ":method": "GET", ":scheme": "https", ":path": "/index.html", ":authority": "www.example.com", "custom-key": "custom-value" });
  });

  test("malformed blocks are refused", () => {
    assert.throws(() => new HpackDecoder().decode(hex("80")), HpackError, "index 0");
    assert.throws(() => new HpackDecoder().decode(hex("be")), HpackError, "an index past both tables");
    assert.throws(() => new HpackDecoder().decode(hex("0085 6162")), HpackError, "a truncated string");
    assert.throws(() => new HpackDecoder().decode(hex("3fe1 ff03")), HpackError, "a table size over the 4096 allowed");
    assert.throws(() => new HpackDecoder().decode(Buffer.concat([literal("x-big", "v".repeat(70_000))])), HpackError, "a header list over 64 KiB");
  });

  test("a literal berth writes reads back", () => {
    const block = Buffer.concat([literal(31, "application/grpc"), literal("grpc-status", "0")]);
    assert.deepEqual({ ...new HpackDecoder().decode(block) }, { "content-type": "application/grpc", "grpc-status": "0" });
  });
});

// ---- raw frames ---------------------------------------------------------------------------

const frame = encodeFrame;

interface Frame { type: number; flags: number; id: number; payload: Buffer }

/** Splits bytes into frames (after the server's preface has been read too). */
function frames(buf: Buffer): Frame[] {
  const out: Frame[] = [];
  for (let pos = 0; pos + 9 <= buf.length;) {
    const len = buf.readUIntBE(pos, 3);
    out.push({ type: buf[pos + 3]!, flags: buf[pos + 4]!, id: buf.readUInt32BE(pos + 5), payload: buf.subarray(pos + 9, pos + 9 + len) });
    pos += 9 + len;
  }
  return out;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const REQUEST_HEADERS = Buffer.concat([
  hex("83 86"), // :method POST, :scheme http
  literal(4, "/runtime.v1.RuntimeService/Version"),
  literal(1, "/run/berth/berth.sock"), // a socket path as :authority, as gRPC-Go before 1.51 sends it
  literal(31, "application/grpc"),
  literal("te", "trailers"),
]);
const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);

describe("berth's HTTP/2 server", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "berth-h2-"));
  const socket = path.join(dir, "h2.sock");
  let listener: net.Server;
  let server: GrpcServer;

  const handlers: Record<string, (call: Call) => void> = {
    version: (call: UnaryCall<unknown, unknown>) => {
      const req = call.request as VersionRequest;
      call.reply({ version: "0.1.0", runtimeName: `len:${req.version.length}`, runtimeVersion: "1", runtimeApiVersion: "v1" });
    },
    listContainers: (call: UnaryCall<unknown, unknown>) => {
      // About 2 MiB: many times any initial window.
      const containers = Array.from({ length: 2000 }, (_, i) => ({ id: `c${i}`.padEnd(64, "x"), podSandboxId: "p", imageRef: "i".repeat(900), state: 1, createdAt: 1, labels: {}, annotations: {} }));
      call.reply(ListContainersResponse.fromPartial({ containers }));
    },
  };

  before(async () => {
    server = new GrpcServer(methodTable([{ service: "RuntimeService", definition: RuntimeServiceService as never, handlers }]));
    listener = net.createServer((c) => server.serve(c));
    await new Promise<void>((resolve) => listener.listen(socket, resolve));
  });

  after(async () => {
    server.forceShutdown();
    await new Promise((resolve) => listener.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  function call(session: http2.ClientHttp2Session, p: string, body: Buffer, headers: Record<string, string> = {}): Promise<{ body: Buffer; trailers: http2.IncomingHttpHeaders }> {
    const req = session.request({ ":method": "POST", ":path": p, "content-type": "application/grpc", te: "trailers", ...headers });
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    return new Promise((resolve, reject) => {
      req.on("trailers", (trailers) => resolve({ body: Buffer.concat(chunks), trailers }));
      req.on("error", reject);
      req.end(body);
    });
  }

  const grpcMessage = (m: Uint8Array) => {
    const out = Buffer.alloc(5 + m.length);
    out.writeUInt32BE(m.length, 1);
    Buffer.from(m).copy(out, 5);
    return out;
  };

  test("a response far larger than the client's windows arrives whole (flow control, WINDOW_UPDATE)", async () => {
    // 16 KiB stream and connection windows: the server must wait for the client's updates, many times.
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket), settings: { initialWindowSize: 16_384 } });
    try {
      const { body, trailers } = await call(session, "/runtime.v1.RuntimeService/ListContainers", grpcMessage(new Uint8Array(0)));
      assert.equal(trailers["grpc-status"], "0");
      const res = ListContainersResponse.decode(body.subarray(5));
      assert.equal(body.readUInt32BE(1), body.length - 5);
      assert.equal(res.containers.length, 2000);
      assert.ok(body.length > 1_800_000, `${body.length} bytes`);
    } finally {
      session.close();
    }
  });

  test("a 6 MiB request (more than the stream's first window) is read whole", async () => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
    try {
      const msg = VersionRequest.encode({ version: "v".repeat(6 * 1024 * 1024) }).finish();
      const { body, trailers } = await call(session, "/runtime.v1.RuntimeService/Version", grpcMessage(msg));
      assert.equal(trailers["grpc-status"], "0");
      assert.equal(VersionResponse.decode(body.subarray(5)).runtimeName, `len:${6 * 1024 * 1024}`);
    } finally {
      session.close();
    }
  });

  test("a header block split over CONTINUATION frames, a PING, and many calls on one connection", async () => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
    try {
      // node's client splits a block over 16 KiB into HEADERS + CONTINUATION.
      const { trailers } = await call(session, "/runtime.v1.RuntimeService/Version", EMPTY_MESSAGE, { "x-padding": "p".repeat(40_000) });
      assert.equal(trailers["grpc-status"], "0");
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      const answers = await Promise.all(Array.from({ length: 50 }, () => call(session, "/runtime.v1.RuntimeService/Version", EMPTY_MESSAGE)));
      assert.ok(answers.every((a) => a.trailers["grpc-status"] === "0"));
    } finally {
      session.close();
    }
  });

  /** Opens a raw connection, sends `bytes`, and gathers what comes back for `ms`, chunk by chunk. */
  async function raw(bytes: Buffer[], ms = 300): Promise<{ chunks: Buffer[]; closed: boolean }> {
    const c = net.connect(socket);
    const chunks: Buffer[] = [];
    let closed = false;
    c.on("data", (d: Buffer) => chunks.push(d));
    c.on("close", () => (closed = true));
    c.on("error", () => undefined);
    await new Promise((resolve) => c.once("connect", resolve));
    for (const b of bytes) c.write(b);
    await new Promise((resolve) => setTimeout(resolve, ms));
    c.destroy();
    return { chunks, closed };
  }

  test("a unary answer is one write: headers, message and trailers together; a socket-path :authority is served", async () => {
    const replies = await raw([PREFACE, frame(4, 0, 0), frame(1, 4, 1, REQUEST_HEADERS), frame(0, 1, 1, EMPTY_MESSAGE)]);
    const onStream = frames(Buffer.concat(replies.chunks)).filter((f) => f.id === 1);
    assert.deepEqual(onStream.map((f) => [f.type, f.flags]), [[1, 4], [0, 0], [1, 5]], "HEADERS, DATA, HEADERS with END_STREAM");
    const chunkWithHeaders = replies.chunks.find((c) => frames(c).some((f) => f.id === 1));
    assert.ok(chunkWithHeaders && frames(chunkWithHeaders).filter((f) => f.id === 1).length === 3, "all three frames came in one read");
    assert.deepEqual({ ...new HpackDecoder().decode(onStream[2]!.payload) }, { "grpc-status": "0" });
  });

  test("connection errors get a GOAWAY naming the problem, then the socket closes", async () => {
    const goaway = async (bytes: Buffer[]) => {
      const r = await raw(bytes, 200);
      const g = frames(Buffer.concat(r.chunks)).find((f) => f.type === 7);
      assert.ok(g, "a GOAWAY");
      assert.ok(r.closed, "the socket closed");
      return { code: g.payload.readUInt32BE(4), debug: g.payload.subarray(8).toString() };
    };
    assert.equal((await goaway([Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")])).code, 1, "not HTTP/2: PROTOCOL_ERROR");
    assert.equal((await goaway([PREFACE, frame(0, 0, 1, Buffer.alloc(20_000))])).code, 6, "a frame over 16 KiB: FRAME_SIZE_ERROR");
    const bad = await goaway([PREFACE, frame(1, 5, 1, hex("80"))]);
    assert.equal(bad.code, 9, "HPACK index 0: COMPRESSION_ERROR");
    assert.match(bad.debug, /index 0/);
    assert.equal((await goaway([PREFACE, frame(1, 5, 2, REQUEST_HEADERS)])).code, 1, "an even stream id: PROTOCOL_ERROR");
    assert.equal((await goaway([PREFACE, frame(1, 0, 1, REQUEST_HEADERS), frame(0, 0, 1, EMPTY_MESSAGE)])).code, 1, "a header block cut by DATA: PROTOCOL_ERROR");
  });

  test(`more than ${MAX_STREAMS} open streams: the extra ones are refused (RST_STREAM REFUSED_STREAM)`, async () => {
    // Requests without END_STREAM stay open, waiting for their message.
    const opens = Array.from({ length: MAX_STREAMS + 1 }, (_, i) => frame(1, 4, 2 * i + 1, REQUEST_HEADERS));
    const r = await raw([PREFACE, frame(4, 0, 0), ...opens], 500);
    const resets = frames(Buffer.concat(r.chunks)).filter((f) => f.type === 3);
    assert.deepEqual(resets.map((f) => [f.id, f.payload.readUInt32BE(0)]), [[2 * MAX_STREAMS + 1, 7]]);
  });
});
