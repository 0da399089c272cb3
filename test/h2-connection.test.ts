// How berthd takes a new CRI connection (its own HTTP/2, src/grpc/h2.ts): it sends its SETTINGS
// at once and serves whatever the client sends first. Clients that wait for the server's SETTINGS
// (gRPC-Go), that send a PING first, that send their request at once, and old gRPC-Go ones whose
// :authority is the socket path must all be answered, more than once on one connection.
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { startBerthd, type Berthd } from "./harness/berthd.js";

function version(session: http2.ClientHttp2Session, authority: string): Promise<string> {
  const req = session.request({
    ":method": "POST",
    ":authority": authority,
    ":path": "/runtime.v1.RuntimeService/Version",
    "content-type": "application/grpc",
    te: "trailers",
  });
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    req.on("trailers", (t) => (t["grpc-status"] === "0" ? resolve(Buffer.concat(chunks).toString("latin1")) : reject(new Error(`grpc-status ${String(t["grpc-status"])}`))));
    req.on("error", reject);
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

describe("new CRI connections", () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd();
  });
  after(async () => {
    await d.cleanup();
  });

  const open = () => http2.connect("http://localhost", { createConnection: () => net.connect(d.socket) });

  test("a client that sends its first request only after the server's SETTINGS (as gRPC-Go does)", async () => {
    const session = open();
    try {
      await new Promise((resolve) => session.once("remoteSettings", resolve));
      for (let i = 0; i < 3; i++) assert.match(await version(session, "localhost"), /berth/);
    } finally {
      session.close();
    }
  });

  test("a client that sends a PING before its first request", async () => {
    const session = open();
    try {
      // node's client cancels a PING sent before its socket is connected.
      await new Promise((resolve) => session.once("connect", resolve));
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      for (let i = 0; i < 3; i++) assert.match(await version(session, "localhost"), /berth/);
    } finally {
      session.close();
    }
  });

  test("a client that sends its request at once, with the socket path as :authority, then valid calls", async () => {
    const session = open();
    try {
      assert.match(await version(session, d.socket), /berth/);
      assert.match(await version(session, "localhost"), /berth/);
      assert.match(await version(session, d.socket), /berth/);
    } finally {
      session.close();
    }
  });

  test("the CRI client (grpc-js) on one connection, many calls", async () => {
    for (let i = 0; i < 20; i++) assert.equal((await d.cri.runtime.version({})).runtimeName, "berth");
  });
});
