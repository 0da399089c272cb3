// Network faults between berth and a real registry: 5xx answers, a connection reset in the
// middle of a blob, and a registry that stops sending. docker-registry cannot be made to do
// these, so a small fault-injecting proxy (this file) sits in front of it and says so.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { pushImage, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

type Fault = "503" | "reset" | "stall" | undefined;

/** Forwards to the registry; GETs of blob `state.digest` get `fault` (`count` times). */
async function startFaultProxy(target: string) {
  const state: { fault: Fault; count: number; hits: number; digest: string } = { fault: undefined, count: 0, hits: 0, digest: "" };
  const server = http.createServer((req, res) => {
    const isBlob = req.method === "GET" && state.digest !== "" && (req.url ?? "").endsWith(`/blobs/${state.digest}`);
    if (isBlob) state.hits++;
    const fault = isBlob && state.count > 0 ? state.fault : undefined;
    if (fault) state.count--;
    if (fault === "503") {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected by the test proxy" }] }));
      return;
    }
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (fault === "reset" || fault === "stall") {
        let sent = 0;
        ur.on("data", (c: Buffer) => {
          if (sent > 4096) return;
          sent += c.length;
          res.write(c.subarray(0, 4096));
          if (sent > 4096) {
            if (fault === "reset") res.socket?.destroy();
            ur.destroy();
          }
        });
        return;
      }
      ur.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

describe("registry faults", () => {
  let reg: TestRegistry;
  let proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  let d: Berthd;
  let img: PushedImage;
  before(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.url);
    img = await pushImage(reg, "fault/app", { layers: [{ entries: [{ path: "big", content: Buffer.alloc(256 * 1024, 7) }], compression: "none" }] });
    proxy.state.digest = img.layerDigests[0]!;
    d = await startBerthd({ config: `[image]\npull_progress_timeout = "1s"\n` });
  });
  after(async () => {
    await d?.cleanup();
    await proxy?.close();
    await reg?.stop();
  });

  const pull = () => d.cri.image.pullImage({ image: { image: `${proxy.host}/fault/app` } });
  const clean = async () => {
    await d.cri.image.removeImage({ image: { image: img.id } });
    proxy.state.fault = undefined;
  };

  test("5xx answers are retried with backoff", async () => {
    Object.assign(proxy.state, { fault: "503", count: 2, hits: 0 });
    assert.equal((await pull()).imageRef, img.id);
    assert.equal(proxy.state.hits, 3, "two 503s, then the layer");
    assert.match(d.logs(), /retrying registry request/);
    await clean();
  });

  test("a connection reset mid-layer restarts the layer", async () => {
    Object.assign(proxy.state, { fault: "reset", count: 1, hits: 0 });
    assert.equal((await pull()).imageRef, img.id);
    assert.equal(proxy.state.hits, 2, "the reset attempt, then a whole one");
    await clean();
  });

  test("a registry that stops sending hits the no-progress timeout with a clear error", async () => {
    Object.assign(proxy.state, { fault: "stall", count: 100, hits: 0 });
    const started = Date.now();
    await assert.rejects(pull(), (e: { code: number; details: string }) => {
      assert.equal(e.code, status.DEADLINE_EXCEEDED, e.details);
      assert.match(e.details, /no data from .* for 1s \(image\.pull_progress_timeout\)/);
      return true;
    });
    assert.ok(Date.now() - started < 15_000);
    assert.deepEqual((await readdir(path.join(d.root, "image", "layers"))).filter((n) => n !== "empty"), []);
    proxy.state.fault = undefined;
  });
});
