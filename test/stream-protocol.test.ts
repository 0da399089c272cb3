// berth's streaming server speaking SPDY/3.1 and WebSocket to this repo's own test clients,
// over real host processes and host TCP ports (HostRuntime): the protocol layer apart from
// containers. The container-backed paths are in stream-containers.test.ts.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { createLogger } from "../src/log.js";
import { StreamServer } from "../src/stream/server.js";
import { HostRuntime } from "./harness/host-runtime.js";
import { httpUpgrade, openExecStreams, SpdyClient, type ExecStreams } from "./harness/spdy-client.js";
import { ChannelClient } from "./harness/ws-client.js";
import { waitFor } from "./harness/berthd.js";

const log = createLogger(process.env.BERTH_TEST_LOG ?? "silent");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => stat(`/proc/${pid}`).then(() => true, () => false);

function spdyExec(url: string, protocol: string, want: { stdin?: boolean; stdout?: boolean; stderr?: boolean; resize?: boolean }, opts = {}): Promise<ExecStreams> {
  return openExecStreams(url, [protocol], want, opts);
}

describe("streaming protocols against host processes", () => {
  let server: StreamServer;
  let runtime: HostRuntime;
  let httpd: http.Server;
  const HTTPD_PORT = 18201;

  before(async () => {
    runtime = new HostRuntime(log);
    server = new StreamServer({ address: "127.0.0.1", port: 0, idleTimeoutMs: 60_000, streamCreationTimeoutMs: 2000, tokenTtlMs: 1500 }, runtime, log);
    await server.start();
    httpd = http.createServer((req, res) => res.end(`hello from ${req.url}`));
    await new Promise<void>((r) => httpd.listen(HTTPD_PORT, "127.0.0.1", () => r()));
  });
  after(async () => {
    await server.stop();
    await new Promise((r) => httpd.close(r));
  });

  const execUrl = (cmd: string[], o: { tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean } = {}) =>
    server.exec({ containerId: "host", cmd, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: o.stdout ?? true, stderr: o.stderr ?? !o.tty });

  test("URLs carry a random token under /exec/, /attach/ and /portforward/", async () => {
    const a = await execUrl(["true"]);
    const b = await execUrl(["true"]);
    assert.match(a, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]{20,}$/);
    assert.notEqual(a, b);
    assert.match(await server.portForward({ sandboxId: "host", ports: [80] }), /\/portforward\//);
    await assert.rejects(server.exec({ containerId: "nope", cmd: ["true"], tty: false, stdin: false, stdout: true, stderr: false }), /not found/);
    await assert.rejects(server.portForward({ sandboxId: "host", ports: [0] }), /1\.\.65535/);
  });

  test("SPDY v4 exec: stdout and stderr apart, exit 3 reported as NonZeroExitCode", async () => {
    const s = await spdyExec(await execUrl(["sh", "-c", "echo out; echo err >&2; exit 3"]), "v4.channel.k8s.io", { stdout: true, stderr: true });
    assert.equal(s.c.protocol, "v4.channel.k8s.io");
    await Promise.all([s.error.done(), s.stdout!.done(), s.stderr!.done()]);
    assert.equal(s.stdout!.text(), "out\n");
    assert.equal(s.stderr!.text(), "err\n");
    const status = JSON.parse(s.error.text());
    assert.deepEqual(status, {
      metadata: {},
      status: "Failure",
      message: "command terminated with non-zero exit code: error executing command [sh -c echo out; echo err >&2; exit 3], exit code 3",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    });
    await waitFor("server to close the connection", async () => s.c.closed);
  });

  test("SPDY v4 exec: exit 0 is Success; a missing command is an InternalError status", async () => {
    let s = await spdyExec(await execUrl(["true"]), "v4.channel.k8s.io", { stdout: true, stderr: true });
    await s.error.done();
    assert.deepEqual(JSON.parse(s.error.text()), { metadata: {}, status: "Success" });
    s = await spdyExec(await execUrl(["/no/such/binary"]), "v4.channel.k8s.io", { stdout: true, stderr: true });
    await s.error.done();
    const st = JSON.parse(s.error.text());
    assert.equal(st.status, "Failure");
    assert.equal(st.reason, "InternalError");
    assert.match(st.message, /no\/such\/binary/);
  });

  test("SPDY v3 and v2: the error stream carries the message text; Success writes nothing", async () => {
    for (const proto of ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]) {
      let s = await spdyExec(await execUrl(["sh", "-c", "exit 7"]), proto, { stdout: true, stderr: true });
      await s.error.done();
      assert.equal(s.c.protocol, proto);
      assert.match(s.error.text(), /non-zero exit code.*exit code 7$/);
      s = await spdyExec(await execUrl(["true"]), proto, { stdout: true, stderr: true });
      await s.error.done();
      assert.equal(s.error.text(), "");
    }
  });

  test("SPDY stdin: 200 KiB through cat comes back whole; closing stdin ends the command", async () => {
    const s = await spdyExec(await execUrl(["sh", "-c", "cat; echo done"], { stdin: true }), "v4.channel.k8s.io", { stdin: true, stdout: true, stderr: true });
    const payload = Buffer.alloc(200 * 1024, "abcdefghij");
    s.stdin!.write(payload.subarray(0, 1000));
    await s.stdout!.waitFor(/^a/);
    s.stdin!.end(payload.subarray(1000));
    await s.error.done();
    await s.stdout!.done();
    assert.equal(s.stdout!.text(), payload.toString() + "done\n");
    assert.equal(JSON.parse(s.error.text()).status, "Success");
  });

  test("SPDY tty: resize messages change the terminal size the command sees", async () => {
    const url = await execUrl(["sh", "-c", "stty size; read a; stty size"], { tty: true, stdin: true });
    const s = await spdyExec(url, "v4.channel.k8s.io", { stdin: true, stdout: true, resize: true });
    s.resize!.write(JSON.stringify({ Width: 100, Height: 30 }));
    await sleep(200);
    // The first `stty size` may run before the first resize lands; the second sees the newer size.
    s.resize!.write(JSON.stringify({ Width: 132, Height: 43 }) + JSON.stringify({ Width: 120, Height: 40 }));
    await sleep(200);
    s.stdin!.write("\n");
    await s.error.done();
    assert.match(s.stdout!.text(), /40 120\s*$/);
    assert.equal(JSON.parse(s.error.text()).status, "Success");
  });

  test("SPDY flow control: a client that announces a small window gets no more until it grants more", async () => {
    const url = await execUrl(["head", "-c", "5000", "/dev/zero"]);
    const c = await SpdyClient.connect(url, ["v4.channel.k8s.io"]);
    c.settings([[7, 1000]]);
    const error = await c.createStream({ streamType: "error" });
    const stdout = await c.createStream({ streamType: "stdout" });
    await c.createStream({ streamType: "stderr" });
    await waitFor("first window's worth", async () => stdout.received === 1000);
    await sleep(300);
    assert.equal(stdout.received, 1000, "berth sent past the window");
    c.windowUpdate(stdout.id, 4000);
    await stdout.done();
    await error.done();
    assert.equal(stdout.received, 5000);
  });

  test("SPDY without flow control (like Go's spdystream): 2 MiB of output arrives without a stall", async () => {
    const s = await spdyExec(await execUrl(["head", "-c", String(2 * 1024 * 1024), "/dev/zero"]), "v4.channel.k8s.io", { stdout: true, stderr: true }, { flowControl: false });
    await s.error.done();
    await s.stdout!.done();
    assert.equal(s.stdout!.received, 2 * 1024 * 1024);
  });

  test("SPDY PING is answered; an unexpected stream type is refused", async () => {
    const s = await spdyExec(await execUrl(["sleep", "1"]), "v4.channel.k8s.io", { stdout: true, stderr: true });
    await s.c.ping(1);
    const odd = await s.c.createStream({ streamType: "bogus" }).catch((e: Error) => e);
    if (!(odd instanceof Error)) {
      await odd.done();
      assert.equal(odd.resetStatus, 3);
    }
    await s.error.done();
    s.c.close();
  });

  test("protocol negotiation: unknown versions get 403 with the accepted list; none at all gets 400", async () => {
    let r = await httpUpgrade(await execUrl(["true"]), { Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": "v9.channel.k8s.io" });
    assert.equal(r.status, 403);
    assert.match(r.headers["x-accepted-stream-protocol-versions"]!, /v4\.channel\.k8s\.io/);
    r = await httpUpgrade(await execUrl(["true"]), { Connection: "Upgrade", Upgrade: "SPDY/3.1" });
    assert.equal(r.status, 400);
    r = await httpUpgrade(await execUrl(["true"]), { Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": ["v9.channel.k8s.io", "v3.channel.k8s.io"] });
    assert.equal(r.status, 101);
    assert.equal(r.headers["x-stream-protocol-version"], "v3.channel.k8s.io");
    r.socket.destroy();
  });

  test("tokens: unknown, reused and expired ones get 404", async () => {
    const base = server.baseUrl;
    const spdy = { Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io" };
    let r = await httpUpgrade(`${base}/exec/notARealToken123`, spdy);
    assert.equal(r.status, 404);
    const url = await execUrl(["true"]);
    const s = await spdyExec(url, "v4.channel.k8s.io", { stdout: true, stderr: true });
    await s.error.done();
    r = await httpUpgrade(url, spdy);
    assert.equal(r.status, 404, "a used token must not work twice");
    const late = await execUrl(["true"]);
    await sleep(1700);
    r = await httpUpgrade(late, spdy);
    assert.equal(r.status, 404, "an expired token must not work");
    await assert.rejects(ChannelClient.connect(`${base}/exec/xyz`, ["v4.channel.k8s.io"]), (e: { status: number }) => e.status === 404);
    // An exec token is no good for attach.
    const ex = await execUrl(["true"]);
    r = await httpUpgrade(ex.replace("/exec/", "/attach/"), spdy);
    assert.equal(r.status, 404);
  });

  test("a client that never opens its streams is cut off after the creation timeout", async () => {
    const c = await SpdyClient.connect(await execUrl(["true"]), ["v4.channel.k8s.io"]);
    await c.createStream({ streamType: "error" });
    await waitFor("connection close", async () => c.closed, 5000);
  });

  test("a client that disconnects mid-stream leaves no process behind", async () => {
    for (const tty of [false, true]) {
      const url = await execUrl(["sh", "-c", "echo pid=$$; exec sleep 300"], { tty, stdin: true });
      const s = await spdyExec(url, "v4.channel.k8s.io", { stdin: true, stdout: true, stderr: !tty, resize: tty });
      const out = await s.stdout!.waitFor(/pid=\d+/);
      const pid = Number(/pid=(\d+)/.exec(out)![1]);
      assert.ok(await alive(pid));
      s.c.close();
      await waitFor(`process ${pid} to be gone (tty=${tty})`, async () => !(await alive(pid)), 10_000);
    }
    await waitFor("connections released", async () => server.connectionCount === 0);
  });

  test("idle connections are closed after stream.idle_timeout and their process killed", async () => {
    const idle = new StreamServer({ address: "127.0.0.1", port: 0, idleTimeoutMs: 700 }, runtime, log);
    await idle.start();
    try {
      const url = await idle.exec({ containerId: "host", cmd: ["sh", "-c", "echo pid=$$; exec sleep 300"], tty: false, stdin: false, stdout: true, stderr: true });
      const s = await spdyExec(url, "v4.channel.k8s.io", { stdout: true, stderr: true });
      const pid = Number(/pid=(\d+)/.exec(await s.stdout!.waitFor(/pid=\d+/))![1]);
      await waitFor("idle close", async () => s.c.closed, 5000);
      await waitFor(`process ${pid} gone`, async () => !(await alive(pid)), 10_000);
    } finally {
      await idle.stop();
    }
  });

  test("SPDY port forward: data and error streams per requestID reach the port; a closed port reports on the error stream", async () => {
    const url = await server.portForward({ sandboxId: "host", ports: [] });
    const c = await SpdyClient.connect(url, ["portforward.k8s.io"]);
    assert.equal(c.protocol, "portforward.k8s.io");
    const get = async (rid: number, port: number, pathName: string) => {
      const error = await c.createStream({ streamType: "error", port: String(port), requestID: String(rid) });
      error.end();
      const data = await c.createStream({ streamType: "data", port: String(port), requestID: String(rid) });
      data.write(`GET ${pathName} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      await data.done();
      await error.done();
      return { data: data.text(), error: error.text() };
    };
    const [a, b] = await Promise.all([get(0, HTTPD_PORT, "/a"), get(1, HTTPD_PORT, "/b")]);
    assert.match(a.data, /^HTTP\/1\.1 200 OK[\s\S]*hello from \/a$/);
    assert.match(b.data, /hello from \/b$/);
    assert.equal(a.error, "");
    const refused = await get(2, 18299, "/");
    assert.match(refused.error, /error forwarding port 18299 to pod host: .*ECONNREFUSED|refused/i);
    const bad = await get(3, 0, "/");
    assert.match(bad.error, /invalid port "0"/);
    c.close();
  });

  test("SPDY port forward: a port outside the request's list is refused", async () => {
    const c = await SpdyClient.connect(await server.portForward({ sandboxId: "host", ports: [HTTPD_PORT] }), ["portforward.k8s.io"]);
    const error = await c.createStream({ streamType: "error", port: "22", requestID: "0" });
    await c.createStream({ streamType: "data", port: "22", requestID: "0" });
    await error.done();
    assert.match(error.text(), /port 22 was not in the PortForward request/);
    c.close();
  });

  test("WebSocket v5 exec: stdin with the close signal, stdout, Success on the error channel", async () => {
    const url = await execUrl(["sh", "-c", "cat; echo bye >&2"], { stdin: true });
    const ws = await ChannelClient.connect(url, ["v5.channel.k8s.io", "v4.channel.k8s.io"]);
    assert.equal(ws.ws.protocol, "v5.channel.k8s.io");
    ws.send(0, "hello ws\n");
    await ws.waitFor(1, /hello ws\n/);
    ws.closeChannel(0);
    await ws.waitClose();
    assert.equal(ws.text(1), "hello ws\n");
    assert.equal(ws.text(2), "bye\n");
    assert.deepEqual(JSON.parse(ws.text(3)), { metadata: {}, status: "Success" });
    // The first message announced the session: an empty one on stdout.
    assert.deepEqual(ws.messages[0], [1, Buffer.alloc(0)]);
  });

  test("WebSocket v4 base64 and channel.k8s.io: exit codes in each status format", async () => {
    let ws = await ChannelClient.connect(await execUrl(["sh", "-c", "printf 'x\\001y'; exit 4"]), ["v4.base64.channel.k8s.io"]);
    await ws.waitClose();
    assert.equal(ws.text(1), "x\u0001y");
    const st = JSON.parse(ws.text(3));
    assert.equal(st.reason, "NonZeroExitCode");
    assert.deepEqual(st.details.causes, [{ reason: "ExitCode", message: "4" }]);
    ws = await ChannelClient.connect(await execUrl(["sh", "-c", "exit 5"]), ["channel.k8s.io"]);
    await ws.waitClose();
    assert.match(ws.text(3), /exit code 5$/);
    ws = await ChannelClient.connect(await execUrl(["sh", "-c", "echo b64"]), ["base64.channel.k8s.io"]);
    await ws.waitClose();
    assert.equal(ws.text(1), "b64\n");
    await assert.rejects(ChannelClient.connect(await execUrl(["true"]), ["v9.nope"]), (e: { status: number }) => e.status === 400);
  });

  test("WebSocket tty exec: resize channel changes the size", async () => {
    const ws = await ChannelClient.connect(await execUrl(["sh", "-c", "read a; stty size"], { tty: true, stdin: true }), ["v4.channel.k8s.io"]);
    ws.send(4, JSON.stringify({ Width: 90, Height: 20 }));
    await sleep(200);
    ws.send(0, "\n");
    await ws.waitClose();
    assert.match(ws.text(1), /20 90\s*$/);
  });

  test("WebSocket port forward: each port's channels open with the port number, then carry the bytes", async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(18202, "127.0.0.1", () => r()));
    try {
      const ws = await ChannelClient.connect(await server.portForward({ sandboxId: "host", ports: [18202, HTTPD_PORT] }), ["v4.channel.k8s.io"]);
      await waitFor("port announcements", async () => ws.messages.length >= 4);
      const port = (ch: number) => ws.received.get(ch)![0]!.readUInt16LE(0);
      assert.deepEqual([port(0), port(1), port(2), port(3)], [18202, 18202, HTTPD_PORT, HTTPD_PORT]);
      ws.send(0, "ping over ws");
      await ws.waitFor(0, /ping over ws/);
      ws.send(2, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      await ws.waitFor(2, /hello from \/ws/);
      ws.ws.close();
      await ws.waitClose();
    } finally {
      await new Promise((r) => echo.close(r));
    }
  });

  test("HTTP without an upgrade is refused; an unknown path is 404", async () => {
    const res = await fetch(await execUrl(["true"]));
    assert.equal(res.status, 400);
    assert.equal((await fetch(`${server.baseUrl}/nothing`)).status, 404);
  });
});

describe("streaming server over TLS", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-stream-tls-"));
    await promisify(execFile)("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("https URLs; SPDY exec works over TLS", async () => {
    const server = new StreamServer({ address: "127.0.0.1", port: 0, idleTimeoutMs: 60_000, tlsCert: path.join(dir, "cert.pem"), tlsKey: path.join(dir, "key.pem") }, new HostRuntime(log), log);
    await server.start();
    try {
      const url = await server.exec({ containerId: "host", cmd: ["echo", "over tls"], tty: false, stdin: false, stdout: true, stderr: true });
      assert.match(url, /^https:\/\//);
      const s = await spdyExec(url, "v4.channel.k8s.io", { stdout: true, stderr: true });
      await s.error.done();
      await s.stdout!.done();
      assert.equal(s.stdout!.text(), "over tls\n");
    } finally {
      await server.stop();
    }
  });
});
