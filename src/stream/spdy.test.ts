// SpdySession against this repo's test client over a real TCP connection: stream setup,
// half-close, and what a misbehaving peer gets back.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { SpdyClient } from "../../test/harness/spdy-client.js";
import { SpdySession, type SpdyStream } from "./spdy.js";

function ctrl(type: number, payload: Buffer, flags = 0): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8003, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
  return Buffer.concat([h, payload]);
}

describe("SpdySession", () => {
  let server: net.Server;
  let port: number;
  const sessions: SpdySession[] = [];
  let onStream: (s: SpdyStream, h: Map<string, string>) => void = () => undefined;

  before(async () => {
    server = net.createServer((sock) => {
      const s = new SpdySession(sock, { maxStreams: 3 });
      sessions.push(s);
      s.on("stream", (st: SpdyStream, h: Map<string, string>) => onStream(st, h));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    for (const s of sessions) s.close();
    await new Promise((r) => server.close(r));
  });

  const connect = () => new Promise<SpdyClient>((resolve) => {
    const sock = net.connect(port, "127.0.0.1", () => resolve(new SpdyClient(sock)));
  });

  test("echo over a stream: headers arrive decoded, FIN both ways", async () => {
    onStream = (st, h) => {
      void st.reply();
      assert.equal(h.get("streamtype"), "echo");
      st.on("data", (d: Buffer) => st.write(Buffer.from(d.toString().toUpperCase())));
      st.on("end", () => st.end());
    };
    const c = await connect();
    const s = await c.createStream({ streamType: "echo" });
    s.write("hello ");
    s.end("spdy");
    await s.done();
    assert.equal(s.text(), "HELLO SPDY");
    assert.equal(s.resetStatus, undefined);
    c.close();
  });

  test("streams beyond maxStreams are refused (REFUSED_STREAM)", async () => {
    onStream = (st) => void st.reply();
    const c = await connect();
    for (let i = 0; i < 3; i++) await c.createStream({ n: String(i) });
    await assert.rejects(c.createStream({ n: "4" }), /reset 3/);
    c.close();
  });

  test("DATA on a stream that was never opened gets RST_STREAM INVALID_STREAM", async () => {
    const c = await connect();
    const got = new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (c.framesIn.includes("ctrl:3:99")) {
          clearInterval(t);
          resolve();
        }
      }, 20);
    });
    const data = Buffer.alloc(8);
    data.writeUInt32BE(99, 0);
    c.sendRaw(data);
    await got;
    c.close();
  });

  test("a stream id going backwards is a protocol error: GOAWAY and the connection closes", async () => {
    onStream = (st) => void st.reply();
    const c = await connect();
    await c.createStream({ a: "1" });
    await c.createStream({ a: "2" }); // id 3
    c.nextId = 1;
    void c.createStream({ a: "again" }).catch(() => undefined);
    await new Promise<void>((r) => c.once("close", () => r()));
    assert.equal(c.goaway?.status, 1);
  });

  test("garbage where a header block should be is a protocol error", async () => {
    const c = await connect();
    const p = Buffer.alloc(10);
    p.writeUInt32BE(1, 0);
    c.sendRaw(ctrl(1, Buffer.concat([p, Buffer.from("definitely not zlib")])));
    await new Promise<void>((r) => c.once("close", () => r()));
    assert.equal(c.goaway?.status, 1);
  });

  test("a WINDOW_UPDATE that overflows the window resets that stream (FLOW_CONTROL_ERROR)", async () => {
    onStream = (st) => void st.reply();
    const c = await connect();
    const s = await c.createStream({ w: "1" });
    c.windowUpdate(s.id, 0x7fffffff);
    await s.done();
    assert.equal(s.resetStatus, 7);
    c.close();
  });

  test("a frame over the size limit closes the connection", async () => {
    const c = await connect();
    const head = Buffer.alloc(8);
    head.writeUInt32BE(1, 0);
    head.writeUInt32BE(0x00ff_ffff, 4);
    c.sendRaw(head);
    await new Promise<void>((r) => c.once("close", () => r()));
    assert.equal(c.goaway?.status, 1);
  });

  test("PING from the client is echoed", async () => {
    const c = await connect();
    await c.ping(7);
    c.close();
  });
});
