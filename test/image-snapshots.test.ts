// Snapshots (container rootfs overlays) from images pulled from a real registry, using berth's
// image store in this process: the same code berthd runs, with the mount visible to the test.
import assert from "node:assert/strict";
import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { execa } from "execa";
import { defaultConfig } from "../src/config.js";
import { isMountpoint } from "../src/image/mount.js";
import { LocalImageStore } from "../src/image/store.js";
import { createLogger } from "../src/log.js";
import { busyboxEntries, pushImage, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

describe("overlay snapshots", () => {
  let reg: TestRegistry;
  let dir: string;
  let store: LocalImageStore;
  let img: PushedImage;
  const keys: string[] = [];
  const open = async () => {
    const config = defaultConfig();
    config.root = path.join(dir, "root");
    const s = new LocalImageStore(config, createLogger("warn"), "berth-test");
    await s.init();
    return s;
  };
  before(async () => {
    reg = await startRegistry();
    dir = await mkdtemp(path.join(tmpdir(), "berth-snap-"));
    img = await pushImage(reg, "snap/layers", {
      layers: [
        {
          entries: [
            ...(await busyboxEntries()),
            { path: "gone.txt", content: "will be whited out" },
            { path: "opq/", type: "dir" },
            { path: "opq/old.txt", content: "hidden by opaque" },
            { path: "keep/", type: "dir", mode: 0o750, uid: 33, gid: 33, mtime: 1_600_000_000 },
            { path: "keep/setuid", content: "#!/bin/sh\n", mode: 0o4755, uid: 0, gid: 0 },
            { path: "keep/owned", content: "x", mode: 0o640, uid: 1234, gid: 5678, mtime: 1_500_000_000 },
          ],
        },
        {
          entries: [
            { path: ".wh.gone.txt", content: "" },
            { path: "opq/", type: "dir" },
            { path: "opq/.wh..wh..opq", content: "" },
            { path: "opq/new.txt", content: "after opaque" },
            { path: "links/", type: "dir" },
            { path: "links/target", content: "linked" },
            { path: "links/hard", type: "hardlink", linkname: "links/target" },
            { path: "links/soft", type: "symlink", linkname: "../keep/owned" },
            { path: "dev/", type: "dir" },
            { path: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
            { path: "dev/fifo", type: "fifo", mode: 0o600 },
            { path: "caps", content: "c", xattrs: { "user.berth": "yes" } },
            { path: `long/${"n".repeat(120)}/${"m".repeat(90)}`, content: "long name via pax" },
          ],
          compression: "zstd",
        },
      ],
    });
    store = await open();
    await store.pull(`${reg.host}/snap/layers`);
  });
  after(async () => {
    for (const k of keys) await store.snapshots.remove(k).catch(() => undefined);
    await reg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("prepare mounts the merged view: whiteouts, opaque dirs, links, devices, owners, modes, times, xattrs", async () => {
    keys.push("c1");
    const { rootfs } = await store.snapshots.prepare("c1", img.id);
    assert.ok(await isMountpoint(rootfs));
    assert.equal((await readdir(rootfs)).includes("gone.txt"), false);
    assert.deepEqual(await readdir(path.join(rootfs, "opq")), ["new.txt"]);
    const hard = await stat(path.join(rootfs, "links/hard"));
    assert.equal(hard.nlink, 2);
    assert.equal(await readFile(path.join(rootfs, "links/hard"), "utf8"), "linked");
    assert.equal(await readlink(path.join(rootfs, "links/soft")), "../keep/owned");
    const dev = await lstat(path.join(rootfs, "dev/null"));
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, (1 << 8) | 3);
    assert.ok((await lstat(path.join(rootfs, "dev/fifo"))).isFIFO());
    const owned = await stat(path.join(rootfs, "keep/owned"));
    assert.equal(owned.uid, 1234);
    assert.equal(owned.gid, 5678);
    assert.equal(owned.mode & 0o7777, 0o640);
    assert.equal(owned.mtimeMs, 1_500_000_000_000);
    assert.equal((await stat(path.join(rootfs, "keep/setuid"))).mode & 0o7777, 0o4755);
    const keep = await stat(path.join(rootfs, "keep"));
    assert.equal(keep.mode & 0o7777, 0o750);
    assert.equal(keep.mtimeMs, 1_600_000_000_000);
    const attr = await execa("getfattr", ["--only-values", "-n", "user.berth", path.join(rootfs, "caps")]);
    assert.equal(attr.stdout, "yes");
    assert.equal(await readFile(path.join(rootfs, "long", "n".repeat(120), "m".repeat(90)), "utf8"), "long name via pax");
    const out = await execa("chroot", [rootfs, "/bin/sh", "-c", "echo hi > /tmp/x && cat /tmp/x"]);
    assert.equal(out.stdout, "hi");
    const usage = await store.snapshots.usage("c1");
    assert.ok(usage.inodes >= 2 && usage.bytes > 0);
    assert.deepEqual(await store.snapshots.prepare("c1", img.id), { rootfs }, "idempotent");
  });

  test("a layer a container uses survives removal of its image; removing the snapshot frees it", async () => {
    keys.push("c2");
    await store.snapshots.prepare("c2", img.id);
    await store.remove(img.id);
    assert.equal(await store.resolve(img.id), undefined);
    const layersDir = path.join(dir, "root", "image", "layers");
    assert.equal((await readdir(layersDir)).filter((n) => n !== "empty").length, 2);
    await store.snapshots.remove("c1");
    assert.equal((await readdir(layersDir)).filter((n) => n !== "empty").length, 2);
    const { rootfs } = await store.snapshots.prepare("c2", img.id);
    await store.snapshots.remove("c2");
    await store.snapshots.remove("c2");
    assert.equal(await isMountpoint(rootfs), false);
    await assert.rejects(stat(rootfs), /ENOENT/);
    assert.deepEqual((await readdir(layersDir)).filter((n) => n !== "empty"), []);
    await assert.rejects(store.snapshots.prepare("c3", img.id), /not found/);
  });

  test("an image of 130 layers mounts in one overlay", async () => {
    const many = await pushImage(reg, "snap/many", {
      layers: [{ entries: await busyboxEntries() }, ...Array.from({ length: 129 }, (_, i) => ({ entries: [{ path: `f${i}`, content: String(i) }], compression: "none" as const }))],
    });
    const started = Date.now();
    await store.pull(`${reg.host}/snap/many`);
    console.log(`# pull of a 130-layer image in-process: ${Date.now() - started} ms`);
    keys.push("c4");
    const { rootfs } = await store.snapshots.prepare("c4", many.id);
    assert.equal(await readFile(path.join(rootfs, "f0"), "utf8"), "0");
    assert.equal(await readFile(path.join(rootfs, "f128"), "utf8"), "128");
    assert.ok((await stat(path.join(rootfs, "bin/busybox"))).isFile());
    await store.snapshots.remove("c4");
    await store.remove(many.id);
  });

  test("snapshots survive a reopen of the store and can be restored", async () => {
    keys.push("c5");
    const base = await pushImage(reg, "snap/base", { layers: [{ entries: await busyboxEntries() }] });
    await store.pull(`${reg.host}/snap/base`);
    const { rootfs } = await store.snapshots.prepare("c5", base.id);
    await writeFile(path.join(rootfs, "tmp", "state"), "kept");
    await execa("umount", [rootfs]);
    store = await open();
    assert.deepEqual(store.snapshots.keys(), ["c5"]);
    await store.snapshots.restore!("c5", base.id);
    assert.equal(await readFile(path.join(rootfs, "tmp", "state"), "utf8"), "kept");
  });
});
