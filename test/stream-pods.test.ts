// Port forwarding into a real pod network namespace through a real berthd: CRI PortForward,
// then SPDY and WebSocket clients (this repo's own) and the real crictl. A busybox httpd runs
// inside the pod's pinned netns (entered with nsenter) and nowhere else.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { SpdyClient } from "./harness/spdy-client.js";
import { ChannelClient } from "./harness/ws-client.js";
import { deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";
import { CRICTL, CRICTL_SKIP, crictlArgs, stopCrictl } from "./harness/crictl.js";

const BRIDGE = "bstr0";
const SUBNET = "10.91.0.0/24";
const POD_PORT = 8081;
const LOCAL_PORT = 18210;

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, timeout: 5000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}

describe("port forward into a pod network namespace", () => {
  let d: Berthd;
  let dir: string;
  let podId: string;
  let httpd: ChildProcess | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-stream-pod-"));
    await writeBridgeConflist(dir, BRIDGE, SUBNET);
    d = await startBerthd({ dir, config: `[cni]\nplugin_timeout = "20s"\n` });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    podId = (await d.cri.runtime.runPodSandbox({ config: podConfig("stream-pf") as never })).podSandboxId;
    const info = JSON.parse((await d.cri.runtime.podSandboxStatus({ podSandboxId: podId, verbose: true })).info.info!) as { netNamespacePath: string };
    const www = path.join(dir, "www");
    await mkdir(www);
    await writeFile(path.join(www, "index.html"), "served from inside the pod\n");
    httpd = spawn("nsenter", [`--net=${info.netNamespacePath}`, "busybox", "httpd", "-f", "-p", `127.0.0.1:${POD_PORT}`, "-h", www], { stdio: "ignore" });
    // Ready when berth's own path reaches it: nothing on the host listens on that port.
    await waitFor("httpd in the pod", async () => {
      const c = await SpdyClient.connect((await d.cri.runtime.portForward({ podSandboxId: podId, port: [] })).url, ["portforward.k8s.io"]);
      const e = await c.createStream({ streamType: "error", port: String(POD_PORT), requestID: "0" });
      const data = await c.createStream({ streamType: "data", port: String(POD_PORT), requestID: "0" });
      data.end("GET / HTTP/1.0\r\n\r\n");
      await Promise.all([e.done(), data.done()]);
      c.close();
      return data.text().includes("200 OK");
    });
  });

  after(async () => {
    httpd?.kill("SIGKILL");
    if (podId) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: podId }).catch(() => undefined);
      await d.cri.runtime.removePodSandbox({ podSandboxId: podId }).catch(() => undefined);
    }
    await d?.cleanup();
    await deleteBridge(BRIDGE);
    await rm(dir, { recursive: true, force: true });
  });

  test("the port is not reachable from the host's own loopback (the forward really enters the pod)", async () => {
    await assert.rejects(get(POD_PORT, "/"), /ECONNREFUSED/);
  });

  test("SPDY port-forward: two requests on one connection, each answered by the pod's httpd", async () => {
    const { url } = await d.cri.runtime.portForward({ podSandboxId: podId, port: [POD_PORT] });
    const c = await SpdyClient.connect(url, ["portforward.k8s.io"]);
    for (const rid of ["1", "2"]) {
      const e = await c.createStream({ streamType: "error", port: String(POD_PORT), requestID: rid });
      e.end();
      const data = await c.createStream({ streamType: "data", port: String(POD_PORT), requestID: rid });
      data.write("GET /index.html HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n");
      await data.done();
      await e.done();
      assert.match(data.text(), /^HTTP\/1\.[01] 200 OK[\s\S]*served from inside the pod/);
      assert.equal(e.text(), "");
    }
    c.close();
  });

  test("SPDY port-forward to a closed port in the pod reports ECONNREFUSED on the error stream", async () => {
    const { url } = await d.cri.runtime.portForward({ podSandboxId: podId, port: [] });
    const c = await SpdyClient.connect(url, ["portforward.k8s.io"]);
    const e = await c.createStream({ streamType: "error", port: "18299", requestID: "0" });
    const data = await c.createStream({ streamType: "data", port: "18299", requestID: "0" });
    await e.done();
    await data.done();
    assert.match(e.text(), new RegExp(`error forwarding port 18299 to pod ${podId}: .*connect.*(refused|ECONNREFUSED)`, "i"));
    c.close();
  });

  test("WebSocket port-forward reaches the pod", async () => {
    const { url } = await d.cri.runtime.portForward({ podSandboxId: podId, port: [POD_PORT] });
    const ws = await ChannelClient.connect(url, ["v4.channel.k8s.io"]);
    await waitFor("port announcement", async () => ws.messages.length >= 2);
    ws.send(0, "GET / HTTP/1.0\r\n\r\n");
    await ws.waitFor(0, /served from inside the pod/);
    ws.ws.close();
    await ws.waitClose();
  });

  test("PortForward validation: unknown pod NotFound, port 0 or 65536 InvalidArgument", async () => {
    await assert.rejects(d.cri.runtime.portForward({ podSandboxId: "nope", port: [80] }), (e: { code: number }) => e.code === status.NOT_FOUND);
    await assert.rejects(d.cri.runtime.portForward({ podSandboxId: podId, port: [0] }), (e: { code: number; details: string }) =>
      e.code === status.INVALID_ARGUMENT && /1\.\.65535/.test(e.details));
    await assert.rejects(d.cri.runtime.portForward({ podSandboxId: podId, port: [65536] }), (e: { code: number }) => e.code === status.INVALID_ARGUMENT);
  });

  test("Exec and Attach validation: no stdio, tty with stderr, empty cmd, unknown container", async () => {
    const bad = (e: { code: number }) => e.code === status.INVALID_ARGUMENT;
    await assert.rejects(d.cri.runtime.exec({ containerId: "c", cmd: ["sh"], tty: false, stdin: false, stdout: false, stderr: false }), bad);
    await assert.rejects(d.cri.runtime.exec({ containerId: "c", cmd: ["sh"], tty: true, stdin: false, stdout: true, stderr: true }), bad);
    await assert.rejects(d.cri.runtime.exec({ containerId: "c", cmd: [], tty: false, stdin: false, stdout: true, stderr: false }), bad);
    await assert.rejects(d.cri.runtime.attach({ containerId: "c", tty: true, stdin: false, stdout: true, stderr: true }), bad);
    await assert.rejects(d.cri.runtime.exec({ containerId: "nope", cmd: ["sh"], tty: false, stdin: false, stdout: true, stderr: false }), (e: { code: number }) => e.code === status.NOT_FOUND);
  });

  test("crictl port-forward serves the pod's httpd on a local port", { skip: CRICTL_SKIP }, async () => {
    const pf = spawn(CRICTL!, [...crictlArgs(d.socket), "port-forward", podId, `${LOCAL_PORT}:${POD_PORT}`], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    pf.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    pf.stderr!.on("data", (b: Buffer) => (out += b.toString()));
    try {
      await waitFor("crictl port-forward listening", async () => out.includes("Forwarding from"), 15_000);
      assert.match(out, /Forwarding from/);
      for (let i = 0; i < 3; i++) {
        const r = await get(LOCAL_PORT, "/index.html");
        assert.equal(r.status, 200);
        assert.equal(r.body, "served from inside the pod\n");
      }
    } finally {
      await stopCrictl(pf);
    }
    assert.doesNotMatch(out, /an error occurred forwarding/, out);
  });
});

describe("stream config: TLS and idle timeout", () => {
  let d: Berthd;
  let dir: string;
  let podId = "";

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-stream-tls-"));
    await writeBridgeConflist(dir, "bstr2", "10.91.2.0/24");
    await promisify(execFile)("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")]);
    d = await startBerthd({
      dir,
      config: `[cni]\nplugin_timeout = "20s"\n[stream]\nidle_timeout = "3s"\ntls_cert = "${path.join(dir, "cert.pem")}"\ntls_key = "${path.join(dir, "key.pem")}"\n`,
    });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    podId = (await d.cri.runtime.runPodSandbox({ config: podConfig("stream-tls") as never })).podSandboxId;
  });

  after(async () => {
    if (podId) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: podId }).catch(() => undefined);
      await d.cri.runtime.removePodSandbox({ podSandboxId: podId }).catch(() => undefined);
    }
    await d?.cleanup();
    await deleteBridge("bstr2");
    await rm(dir, { recursive: true, force: true });
  });

  test("stream.tls_cert/tls_key give https URLs; stream.idle_timeout closes a quiet connection", async () => {
    const { url } = await d.cri.runtime.portForward({ podSandboxId: podId, port: [POD_PORT] });
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/portforward\//);
    const c = await SpdyClient.connect(url, ["portforward.k8s.io"]);
    const started = Date.now();
    await waitFor("idle close", async () => c.closed, 10_000);
    const waited = Date.now() - started;
    assert.ok(waited >= 2500 && waited < 8000, `closed after ${waited} ms with idle_timeout 3s`);
  });
});
