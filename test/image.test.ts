// The ImageService against a real berthd and a real docker-registry on 127.0.0.1.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, hostArch, pushImage, pushIndex, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

type GrpcErr = { code: number; details: string };

async function layerDirs(d: Berthd): Promise<string[]> {
  return (await readdir(path.join(d.root, "image", "layers"))).filter((n) => n !== "empty").sort();
}
async function blobCount(d: Berthd): Promise<number> {
  return (await readdir(path.join(d.root, "image", "blobs", "sha256"))).length;
}

describe("image pull, status, list, remove", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let bb: PushedImage;
  let ref: string;
  before(async () => {
    reg = await startRegistry();
    bb = await pushImage(reg, "test/busybox", {
      layers: [
        { entries: await busyboxEntries() },
        { entries: [{ path: "etc/motd", content: "hello from layer 2\n" }], compression: "none" },
      ],
      config: { User: "www-data", Env: ["PATH=/bin", "A=1"], Cmd: ["sh"], WorkingDir: "/tmp", StopSignal: "SIGQUIT" },
    }, ["v1", "v2", "v3"]);
    ref = `${reg.host}/test/busybox`;
    d = await startBerthd({ config: `[image]\npause_image = "${ref}:v3"\n` });
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("PullImage returns the image ID; ImageStatus answers by tag, ID, short ID and digest alike", async () => {
    const started = Date.now();
    const r = await d.cri.image.pullImage({ image: { image: `${ref}:v1` } });
    const ms = Date.now() - started;
    assert.equal(r.imageRef, bb.id);
    console.log(`# pull of a 2-layer busybox image (${bb.size} bytes) over gRPC: ${ms} ms`);
    const byTag = await d.cri.image.imageStatus({ image: { image: `${ref}:v1` } });
    const img = byTag.image!;
    assert.equal(img.id, bb.id);
    assert.deepEqual(img.repoTags, [`${ref}:v1`]);
    assert.deepEqual(img.repoDigests, [`${ref}@${bb.manifestDigest}`]);
    assert.equal(img.size, BigInt(bb.size));
    assert.equal(img.username, "www-data");
    assert.equal(img.uid, undefined);
    assert.equal(img.pinned, false);
    for (const q of [bb.id, bb.id.slice(7), bb.id.slice(7, 19), `${ref}@${bb.manifestDigest}`]) {
      const s = await d.cri.image.imageStatus({ image: { image: q } });
      assert.deepEqual(s.image, img, q);
    }
  });

  test("ImageStatus verbose carries the image config; absent images are nil, not an error", async () => {
    const s = await d.cri.image.imageStatus({ image: { image: `${ref}:v1` }, verbose: true });
    const info = JSON.parse(s.info.info!);
    assert.equal(info.imageSpec.config.User, "www-data");
    assert.deepEqual(info.imageSpec.config.Cmd, ["sh"]);
    assert.equal(info.imageSpec.config.StopSignal, "SIGQUIT");
    const none = await d.cri.image.imageStatus({ image: { image: `${ref}:nope` } });
    assert.equal(none.image, undefined);
    await assert.rejects(d.cri.image.imageStatus({ image: { image: "Not/Valid" } }), (e: GrpcErr) => e.code === status.INVALID_ARGUMENT && /lowercase/.test(e.details));
    await assert.rejects(d.cri.image.pullImage({ image: { image: "" } }), (e: GrpcErr) => e.code === status.INVALID_ARGUMENT);
  });

  test("more tags of one image join one ID; a second pull reuses every layer; the pause image is pinned", async () => {
    const before = await layerDirs(d);
    const blobs = await blobCount(d);
    const logLen = d.logs().length;
    for (const t of ["v2", "v3"]) assert.equal((await d.cri.image.pullImage({ image: { image: `${ref}:${t}` } })).imageRef, bb.id);
    assert.deepEqual(await layerDirs(d), before);
    assert.equal(await blobCount(d), blobs);
    const pulledLogs = d.logs().slice(logLen).split("\n").filter((l) => l.includes("image pulled"));
    assert.equal(pulledLogs.length, 2);
    for (const l of pulledLogs) assert.equal(JSON.parse(l).reused, 2, l);
    const s = (await d.cri.image.imageStatus({ image: { image: bb.id } })).image!;
    assert.deepEqual(s.repoTags.sort(), [`${ref}:v1`, `${ref}:v2`, `${ref}:v3`]);
    assert.equal(s.pinned, true);
    const list = await d.cri.image.listImages({});
    assert.equal(list.images.length, 1);
    assert.deepEqual((await d.cri.image.listImages({ filter: { image: { image: `${ref}:v2` } } })).images.map((i) => i.id), [bb.id]);
    assert.deepEqual((await d.cri.image.listImages({ filter: { image: { image: `${ref}:zzz` } } })).images, []);
  });

  test("concurrent pulls of the same image share one download", async () => {
    await d.cri.image.removeImage({ image: { image: bb.id } });
    const logLen = d.logs().length;
    const rs = await Promise.all([1, 2, 3].map(() => d.cri.image.pullImage({ image: { image: `${ref}:v1` } })));
    for (const r of rs) assert.equal(r.imageRef, bb.id);
    const unpacked = d.logs().slice(logLen).split("\n").filter((l) => l.includes("layer unpacked"));
    assert.equal(unpacked.length, 2, "each layer unpacked once");
  });

  test("RemoveImage by one tag removes the image with all its tags; idempotent; frees layers and blobs", async () => {
    await d.cri.image.pullImage({ image: { image: `${ref}:v2` } });
    assert.deepEqual((await d.cri.image.imageStatus({ image: { image: bb.id } })).image!.repoTags.sort(), [`${ref}:v1`, `${ref}:v2`]);
    await d.cri.image.removeImage({ image: { image: `${ref}:v1` } });
    for (const q of [`${ref}:v1`, `${ref}:v2`, bb.id, `${ref}@${bb.manifestDigest}`]) {
      assert.equal((await d.cri.image.imageStatus({ image: { image: q } })).image, undefined, q);
    }
    await d.cri.image.removeImage({ image: { image: `${ref}:v2` } });
    await d.cri.image.removeImage({ image: { image: bb.id } });
    assert.deepEqual(await layerDirs(d), []);
    assert.equal(await blobCount(d), 0);
    assert.equal((await d.cri.image.listImages({})).images.length, 0);
  });

  test("pull by digest: no tag, the digest reference in repo_digests", async () => {
    const dref = `${ref}@${bb.manifestDigest}`;
    assert.equal((await d.cri.image.pullImage({ image: { image: dref } })).imageRef, bb.id);
    const s = (await d.cri.image.imageStatus({ image: { image: dref } })).image!;
    assert.deepEqual(s.repoTags, []);
    assert.deepEqual(s.repoDigests, [dref]);
    const wrong = `${ref}@sha256:${"0".repeat(64)}`;
    await assert.rejects(d.cri.image.pullImage({ image: { image: wrong } }), (e: GrpcErr) => e.code === status.NOT_FOUND && /not found/.test(e.details));
    await d.cri.image.removeImage({ image: { image: dref } });
    assert.equal((await d.cri.image.listImages({})).images.length, 0);
  });

  test("ImageFsInfo reports bytes and inodes of the image store and its mountpoint", async () => {
    await d.cri.image.pullImage({ image: { image: `${ref}:v1` } });
    const fs = await d.cri.image.imageFsInfo({});
    const u = fs.imageFilesystems[0]!;
    assert.equal(u.fsId!.mountpoint, path.join(d.root, "image"));
    assert.ok(u.usedBytes!.value > 1_000_000n, `busybox is over 1 MB, got ${u.usedBytes!.value}`);
    assert.ok(u.inodesUsed!.value >= 10n);
    assert.ok(u.timestamp > 0n);
  });

  test("a second after a pull berthd runs one full GC and malloc_trim (bin/berthd exposes gc)", async () => {
    const runs = () => d.logs().split("\n").filter((l) => l.includes('"msg":"idle memory collection"'));
    await d.cri.image.removeImage({ image: { image: `${ref}:v1` } });
    await d.cri.image.pullImage({ image: { image: `${ref}:v1` } });
    const before = runs().length;
    const pulledAt = Date.now();
    const line = await waitFor("the idle memory collection after the pull", async () => runs()[before], 10_000);
    assert.ok(Date.now() - pulledAt >= 900, "not before the quiet second");
    const rec = JSON.parse(line) as { fullGc: boolean; gcMs: number; rssBefore: number; rssAfter: number };
    assert.equal(rec.fullGc, true, line);
    assert.ok(rec.rssBefore > 0 && rec.rssAfter > 0, line);
    // Read-only calls afterwards do not trigger another one.
    for (let i = 0; i < 5; i++) await d.cri.image.listImages({});
    await new Promise((r) => setTimeout(r, 1300));
    assert.equal(runs().length, before + 1);
  });

  test("a missing image and an unreachable registry are clear errors", async () => {
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${ref}:missing` } }), (e: GrpcErr) => e.code === status.NOT_FOUND && e.details.includes("missing"));
    await assert.rejects(d.cri.image.pullImage({ image: { image: `127.0.0.1:1/x:y` } }), (e: GrpcErr) => /ECONNREFUSED/.test(e.details));
  });
});

describe("image formats: indexes, Docker schema2, zstd, uncompressed, user", () => {
  let reg: TestRegistry;
  let d: Berthd;
  before(async () => {
    reg = await startRegistry();
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  for (const mt of ["oci", "docker"] as const) {
    test(`${mt} index picks the host platform`, async () => {
      const bbx = await busyboxEntries();
      const other = hostArch() === "amd64" ? "arm64" : "amd64";
      const idx = await pushIndex(reg, `multi/${mt}`, [
        { layers: [{ entries: [...bbx, { path: "arch", content: `${mt} ${other}` }] }], architecture: other },
        { layers: [{ entries: [...bbx, { path: "arch", content: `${mt} s390x` }] }], architecture: "s390x" },
        { layers: [{ entries: [...bbx, { path: "arch", content: `${mt} ${hostArch()}` }] }], architecture: hostArch(), ...(hostArch() === "arm64" ? { variant: "v8" } : {}) },
      ], ["latest"], mt);
      const r = await d.cri.image.pullImage({ image: { image: `${reg.host}/multi/${mt}` } });
      assert.equal(r.imageRef, idx.images[2]!.id);
      const s = (await d.cri.image.imageStatus({ image: { image: r.imageRef } })).image!;
      assert.deepEqual(s.repoDigests, [`${reg.host}/multi/${mt}@${idx.indexDigest}`]);
      assert.deepEqual(s.repoTags, [`${reg.host}/multi/${mt}:latest`]);
    });
  }

  test("an index without the host platform fails naming the platforms it has", async () => {
    await pushIndex(reg, "multi/foreign", [{ layers: [{ entries: [{ path: "x", content: "x" }] }], architecture: "mips" }]);
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/multi/foreign` } }),
      (e: GrpcErr) => e.code === status.FAILED_PRECONDITION && /no manifest for linux\//.test(e.details) && /linux\/mips/.test(e.details));
  });

  test("zstd, gzip and uncompressed layers; Docker schema2 media types", async () => {
    const img = await pushImage(reg, "fmt/zstd", {
      layers: [
        { entries: await busyboxEntries(), compression: "zstd" },
        { entries: [{ path: "a", content: "a" }], compression: "none" },
        { entries: [{ path: "b", content: "b" }], compression: "gzip" },
      ],
    });
    assert.equal((await d.cri.image.pullImage({ image: { image: `${reg.host}/fmt/zstd` } })).imageRef, img.id);
    const dimg = await pushImage(reg, "fmt/docker", { mediaTypes: "docker", layers: [{ entries: [{ path: "c", content: "c" }] }, { entries: [{ path: "d", content: "d" }], compression: "none" }] });
    assert.equal((await d.cri.image.pullImage({ image: { image: `${reg.host}/fmt/docker` } })).imageRef, dimg.id);
  });

  test("uid or username from the config's User", async () => {
    const table: Array<[string, bigint | undefined, string]> = [["1002", 1002n, ""], ["www-data", undefined, "www-data"], ["1003:1004", 1003n, ""], ["www-data:1004", undefined, "www-data"], ["", undefined, ""]];
    for (const [user, uid, username] of table) {
      const tag = `u${table.findIndex((t) => t[0] === user)}`;
      await pushImage(reg, "fmt/user", { layers: [{ entries: [{ path: "u", content: user }] }], config: { User: user } }, [tag]);
      await d.cri.image.pullImage({ image: { image: `${reg.host}/fmt/user:${tag}` } });
      const s = (await d.cri.image.imageStatus({ image: { image: `${reg.host}/fmt/user:${tag}` } })).image!;
      assert.equal(s.uid?.value, uid, user);
      assert.equal(s.username, username, user);
    }
  });
});

describe("integrity: a corrupted blob is rejected and nothing is stored", () => {
  let reg: TestRegistry;
  let d: Berthd;
  before(async () => {
    reg = await startRegistry();
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("corrupt layer", async () => {
    const img = await pushImage(reg, "bad/layer", { layers: [{ entries: [{ path: "ok", content: "fine" }] }, { entries: [{ path: "x", content: "x".repeat(10000) }] }] });
    await reg.corruptBlob(img.layerDigests[1]!);
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/bad/layer` } }), (e: GrpcErr) => {
      assert.match(e.details, new RegExp(`layer ${img.layerDigests[1]}`));
      assert.match(e.details, /nothing was stored/);
      return true;
    });
    assert.deepEqual(await layerDirs(d), []);
    assert.equal(await blobCount(d), 0);
    assert.equal((await d.cri.image.listImages({})).images.length, 0);
  });

  test("corrupt config", async () => {
    const img = await pushImage(reg, "bad/config", { layers: [{ entries: [{ path: "ok", content: "fine" }] }] });
    await reg.corruptBlob(img.id);
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/bad/config` } }), (e: GrpcErr) => /image config .* content digest is/.test(e.details));
    assert.deepEqual(await layerDirs(d), []);
    assert.equal(await blobCount(d), 0);
  });
});

describe("token-auth registry", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let img: PushedImage;
  before(async () => {
    reg = await startRegistry({ tokenAuth: { users: { alice: { password: "s3cret-pw", repos: ["private/app"] } }, anonymousPull: ["public/app"] } });
    img = await pushImage(reg, "private/app", { layers: [{ entries: [{ path: "p", content: "private" }] }] });
    await pushImage(reg, "public/app", { layers: [{ entries: [{ path: "q", content: "public" }] }] });
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("anonymous token for a public repository", async () => {
    await d.cri.image.pullImage({ image: { image: `${reg.host}/public/app` } });
    assert.ok(reg.tokenRequests.some((t) => t.user === "" && t.scope === "repository:public/app:pull" && t.granted));
  });

  test("no credentials and wrong credentials are refused; right ones (password or base64 auth) pull", async () => {
    const image = { image: `${reg.host}/private/app` };
    await assert.rejects(d.cri.image.pullImage({ image }), (e: GrpcErr) => e.code === status.UNAUTHENTICATED && /requires credentials/.test(e.details));
    await assert.rejects(d.cri.image.pullImage({ image, auth: { username: "alice", password: "wrong" } }),
      (e: GrpcErr) => e.code === status.UNAUTHENTICATED && /refused a token for user "alice"/.test(e.details) && !e.details.includes("wrong"));
    assert.equal((await d.cri.image.pullImage({ image, auth: { username: "alice", password: "s3cret-pw" } })).imageRef, img.id);
    await d.cri.image.removeImage({ image: { image: img.id } });
    const auth = Buffer.from("alice:s3cret-pw").toString("base64");
    assert.equal((await d.cri.image.pullImage({ image, auth: { auth, serverAddress: reg.host } })).imageRef, img.id);
    assert.ok(!d.logs().includes("s3cret-pw"), "the password never reaches a log line");
  });

  test("credentials given for another server are not sent", async () => {
    await d.cri.image.removeImage({ image: { image: img.id } });
    const n = reg.tokenRequests.length;
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/private/app` }, auth: { username: "alice", password: "s3cret-pw", serverAddress: "other.example.com" } }),
      (e: GrpcErr) => e.code === status.UNAUTHENTICATED);
    assert.ok(reg.tokenRequests.slice(n).every((t) => t.user === ""));
  });
});

describe("mirrors", () => {
  let mirror: TestRegistry;
  let d: Berthd;
  before(async () => {
    mirror = await startRegistry();
    d = await startBerthd({ config: `[image.mirrors]\n"docker.io" = ["http://127.0.0.1:1", "${mirror.url}"]\n` });
  });
  after(async () => {
    await d?.cleanup();
    await mirror?.stop();
  });

  test("a docker.io image comes from the first mirror that serves it", async () => {
    const img = await pushImage(mirror, "library/busybox", { layers: [{ entries: await busyboxEntries() }] }, ["1.36"]);
    assert.equal((await d.cri.image.pullImage({ image: { image: "busybox:1.36" } })).imageRef, img.id);
    const s = (await d.cri.image.imageStatus({ image: { image: "docker.io/library/busybox:1.36" } })).image!;
    assert.deepEqual(s.repoTags, ["docker.io/library/busybox:1.36"]);
  });

  test("an image no mirror has, with the upstream unreachable here, is NOT_FOUND naming both", async () => {
    await assert.rejects(d.cri.image.pullImage({ image: { image: "busybox:no-such-tag" } }), (err: { code: number; details: string }) =>
      err.code === status.NOT_FOUND && /mirrors failed/.test(err.details) && /no-such-tag/.test(err.details));
  });
});

describe("crash safety", () => {
  let reg: TestRegistry;
  let d: Berthd;
  before(async () => {
    reg = await startRegistry();
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("kill -9 mid-pull, then restart: no partial layers or blobs, and the pull works", async () => {
    const { randomBytes } = await import("node:crypto");
    const big = randomBytes(96 << 20);
    const img = await pushImage(reg, "big/app", {
      layers: [{ entries: [{ path: "small", content: "s" }] }, { entries: [{ path: "big.bin", content: big }], compression: "none" }],
    });
    const layersDir = path.join(d.root, "image", "layers");
    const pull = d.cri.image.pullImage({ image: { image: `${reg.host}/big/app` } }).catch((e: Error) => e);
    const until = Date.now() + 30_000;
    for (;;) {
      const names = await readdir(layersDir);
      const tmp = names.find((n) => n.startsWith("tmp-"));
      if (tmp && (await stat(path.join(layersDir, tmp, "big.bin")).catch(() => undefined))) break;
      if (Date.now() > until) throw new Error(`no partial layer seen: ${names}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    d.proc.kill("SIGKILL");
    await d.stop();
    assert.ok((await pull) instanceof Error);
    d = await d.restart();
    const names = await readdir(layersDir);
    assert.ok(!names.some((n) => n.startsWith("tmp-")), `partial layers removed: ${names}`);
    assert.equal((await d.cri.image.listImages({})).images.length, 0);
    assert.deepEqual(await layerDirs(d), [], "layers no image holds are freed on start");
    assert.equal((await d.cri.image.pullImage({ image: { image: `${reg.host}/big/app` } })).imageRef, img.id);
    const st = await stat(path.join(layersDir, (await layerDirs(d)).find((n) => n !== "empty")!));
    assert.ok(st.isDirectory());
  });
});
