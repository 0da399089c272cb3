// Network faults between berth and a real registry: 5xx answers, a connection reset in the
// middle of a blob, a registry that stops sending, corrupt bytes, a truncated gzip stream and a
// slow but steady one. docker-registry cannot be made to do these, so a fault-injecting proxy
// (test/harness/registry-proxy.ts) sits in front of it. After every fault nothing of the pull
// is left under <root>/image, and other pulls and RPCs go on while one is stuck.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { pushImage, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { startFaultProxy, type FaultProxy } from "./harness/registry-proxy.js";

describe("registry faults", () => {
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let d: Berthd;
  let img: PushedImage;
  let gz: PushedImage;
  let other: PushedImage;
  before(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.url);
    img = await pushImage(reg, "fault/app", { layers: [{ entries: [{ path: "big", content: Buffer.alloc(256 * 1024, 7) }], compression: "none" }] });
    gz = await pushImage(reg, "fault/gz", { layers: [{ entries: [{ path: "noise", content: randomBytes(128 * 1024) }], compression: "gzip" }] });
    other = await pushImage(reg, "fault/other", { layers: [{ entries: [{ path: "o", content: "other" }] }] });
    proxy.state.digest = img.layerDigests[0]!;
    d = await startBerthd({ config: `[image]\npull_progress_timeout = "1s"\n` });
  });
  after(async () => {
    await d?.cleanup();
    await proxy?.close();
    await reg?.stop();
  });

  const pull = (repo = "fault/app") => d.cri.image.pullImage({ image: { image: `${proxy.host}/${repo}` } });
  const clean = async () => {
    await d.cri.image.removeImage({ image: { image: img.id } });
    proxy.state.fault = undefined;
  };
  const imageDirs = async () => ({
    images: (await d.cri.image.listImages({})).images.map((i) => i.id).sort(),
    layers: (await readdir(path.join(d.root, "image", "layers"))).sort(),
    blobs: (await readdir(path.join(d.root, "image", "blobs", "sha256"))).sort(),
    meta: (await readdir(path.join(d.root, "image", "meta"), { recursive: true })).map(String).sort(),
  });
  /** A refused pull: the error, and nothing of it left under <root>/image. */
  const refused = async (repo: string, code: number, re: RegExp) => {
    const before = await imageDirs();
    await assert.rejects(pull(repo), (e: { code: number; details: string }) => {
      assert.equal(e.code, code, `${status[e.code]}: ${e.details}`);
      assert.match(e.details, re);
      process.stderr.write(`# ${status[code]}: ${e.details.slice(0, 300)}\n`);
      return true;
    });
    assert.deepEqual(await imageDirs(), before, "the failed pull left something under <root>/image");
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

  test("a stall leaves nothing behind, and other pulls and RPCs go on while it waits", async () => {
    Object.assign(proxy.state, { fault: "stall", count: 100, hits: 0 });
    const before = await imageDirs();
    let stalledAt = 0;
    const stalled = pull().finally(() => (stalledAt = Date.now()));
    stalled.catch(() => undefined);
    await waitFor("the blob GET", async () => proxy.state.hits > 0);
    await d.cri.image.pullImage({ image: { image: `${reg.host}/fault/other` } });
    await d.cri.runtime.version({});
    await d.cri.image.listImages({});
    const othersAt = Date.now();
    await assert.rejects(stalled, (e: { code: number; details: string }) => e.code === status.DEADLINE_EXCEEDED && /pull_progress_timeout/.test(e.details));
    assert.ok(othersAt < stalledAt, "the other pull and RPCs waited for the stalled pull");
    await d.cri.image.removeImage({ image: { image: other.id } });
    assert.deepEqual(await imageDirs(), before, "the stalled pull left something under <root>/image");
    proxy.state.fault = undefined;
  });

  test("bytes that do not match the blob's digest are refused naming the digest, nothing stored", async () => {
    Object.assign(proxy.state, { fault: "corrupt", count: 100, hits: 0 });
    await refused("fault/app", status.INVALID_ARGUMENT, new RegExp(`layer ${img.layerDigests[0]}: the registry sent content that is not a tar stream .*corrupt, or not the content its digest names`));
    proxy.state.fault = undefined;
  });

  test("a truncated gzip stream is refused naming the digest, nothing stored", async () => {
    Object.assign(proxy.state, { fault: "truncate", count: 100, hits: 0, digest: gz.layerDigests[0]! });
    try {
      await refused("fault/gz", status.INVALID_ARGUMENT, new RegExp(`layer ${gz.layerDigests[0]}: the registry sent content that is not a gzip tar stream \\(unexpected end of file\\)`));
    } finally {
      Object.assign(proxy.state, { fault: undefined, digest: img.layerDigests[0]! });
    }
  });

  test("a slow but steady registry is never cut off (1s progress timeout, 3 s blob), and others go on meanwhile", async () => {
    Object.assign(proxy.state, { fault: "slow", count: 1, hits: 0, slowBytes: 16 * 1024, slowEveryMs: 200 });
    const started = Date.now();
    let slowAt = 0;
    const slow = pull().finally(() => (slowAt = Date.now()));
    await waitFor("the blob GET", async () => proxy.state.hits > 0);
    await d.cri.image.pullImage({ image: { image: `${reg.host}/fault/other` } });
    await d.cri.runtime.version({});
    const othersAt = Date.now();
    assert.equal((await slow).imageRef, img.id);
    process.stderr.write(`# slow registry: pull took ${slowAt - started} ms at 80 KiB/s with a 1s progress timeout; another pull finished ${slowAt - othersAt} ms before it\n`);
    assert.ok(slowAt - started > 2000, "the blob was not slow");
    assert.ok(othersAt < slowAt);
    await d.cri.image.removeImage({ image: { image: other.id } });
    await clean();
  });
});
