// Hostile layers pulled through a real berthd: every escape is refused, names its entry, and
// leaves nothing outside the store (nor a partial layer inside it).
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { pushImage, type LayerEntry } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

type GrpcErr = { code: number; details: string };

describe("hostile layers", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let outside: string;
  before(async () => {
    reg = await startRegistry();
    d = await startBerthd();
    outside = await mkdtemp(path.join(tmpdir(), "berth-outside-"));
    await writeFile(path.join(outside, "victim"), "original");
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
    await rm(outside, { recursive: true, force: true });
  });

  const deep = "../".repeat(20);
  const cases: Array<[string, () => LayerEntry[], RegExp]> = [
    ["dot-dot path", () => [{ path: `${deep}${outside.slice(1)}/dotdot`, content: "x" }], /climbs out with "\.\."/],
    ["absolute path", () => [{ path: `${outside}/abs`, content: "x" }], /is an absolute path/],
    ["write through a symlink", () => [{ path: "evil", type: "symlink", linkname: outside }, { path: "evil/through", content: "x" }], /written through the symlink "evil"/],
    ["directory through a symlink", () => [{ path: "evil", type: "symlink", linkname: outside }, { path: "evil/sub/", type: "dir" }], /through the symlink "evil"/],
    ["whiteout through a symlink", () => [{ path: "evil", type: "symlink", linkname: outside }, { path: "evil/.wh.victim", content: "" }], /through the symlink "evil"/],
    ["hardlink to an absolute host file", () => [{ path: "h", type: "hardlink", linkname: path.join(outside, "victim") }], /hardlink target of "h".*absolute/],
    ["hardlink climbing out", () => [{ path: "h", type: "hardlink", linkname: `${deep}${outside.slice(1)}/victim` }], /hardlink target of "h".*"\.\."/],
    ["hardlink through a symlink", () => [{ path: "o", type: "symlink", linkname: outside }, { path: "h", type: "hardlink", linkname: "o/victim" }], /hardlink "h" points through the symlink "o"/],
    ["reserved overlay xattr", () => [{ path: "d/", type: "dir", xattrs: { "trusted.overlay.redirect": "/etc" } }], /reserved xattr trusted\.overlay\.redirect/],
  ];

  for (const [name, entries, why] of cases) {
    test(`${name} is refused`, async () => {
      const repo = `hostile/${name.replace(/[^a-z]+/g, "-")}`;
      await pushImage(reg, repo, { layers: [{ entries: [{ path: "ok", content: "fine" }] }, { entries: entries() }] });
      await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/${repo}` } }), (e: GrpcErr) => {
        assert.equal(e.code, status.INVALID_ARGUMENT, e.details);
        assert.match(e.details, why);
        assert.match(e.details, /unsafe/);
        return true;
      });
      assert.deepEqual((await readdir(outside)).sort(), ["victim"]);
      assert.equal(await readFile(path.join(outside, "victim"), "utf8"), "original");
      assert.deepEqual((await readdir(path.join(d.root, "image", "layers"))).filter((n) => n !== "empty"), []);
      assert.equal((await d.cri.image.listImages({})).images.length, 0);
    });
  }

  test("a file replacing a symlink replaces the link and never writes to its target", async () => {
    const victim = path.join(outside, "victim");
    await pushImage(reg, "hostile/replace", { layers: [{ entries: [{ path: "f", type: "symlink", linkname: victim }, { path: "f", content: "new" }] }] });
    await d.cri.image.pullImage({ image: { image: `${reg.host}/hostile/replace` } });
    assert.equal(await readFile(victim, "utf8"), "original");
    await d.cri.image.removeImage({ image: { image: `${reg.host}/hostile/replace` } });
  });
});
