// crictl pull/images/inspecti/rmi/imagefsinfo against berth, as a user would run them.
// Needs the CRICTL env var (path to a cri-tools crictl binary); skipped without it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { execa } from "execa";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { CRICTL, CRICTL_SKIP, crictlArgs } from "./harness/crictl.js";
import { busyboxEntries, pushImage, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

const skip = CRICTL_SKIP;

describe("crictl image commands", { skip }, () => {
  let reg: TestRegistry;
  let d: Berthd;
  let img: PushedImage;
  let ref: string;
  const crictl = (...args: string[]) =>
    execa(CRICTL!, [...crictlArgs(d.socket), "--image-endpoint", `unix://${d.socket}`, "--timeout", "30s", ...args], { reject: false });

  before(async () => {
    reg = await startRegistry({ tokenAuth: { users: { bob: { password: "pw-bob", repos: ["crictl/private"] } }, anonymousPull: ["crictl/busybox"] } });
    img = await pushImage(reg, "crictl/busybox", { layers: [{ entries: await busyboxEntries() }], config: { User: "1002" } }, ["1.0", "latest"]);
    await pushImage(reg, "crictl/private", { layers: [{ entries: [{ path: "p", content: "p" }] }] });
    ref = `${reg.host}/crictl/busybox`;
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("pull prints the image ID; images lists it; inspecti shows its status and config", async () => {
    const p = await crictl("pull", `${ref}:1.0`);
    assert.equal(p.exitCode, 0, p.stderr);
    assert.match(p.stdout, new RegExp(`Image is up to date for ${img.id}`));
    const ls = await crictl("images");
    assert.equal(ls.exitCode, 0, ls.stderr);
    assert.match(ls.stdout, new RegExp(`${ref.replace(/\./g, "\\.")}\\s+1\\.0\\s+${img.id.slice(7, 20)}`));
    const q = await crictl("images", "-q");
    assert.equal(q.stdout.trim(), img.id);
    const inspect = await crictl("inspecti", `${ref}:1.0`);
    assert.equal(inspect.exitCode, 0, inspect.stderr);
    const doc = JSON.parse(inspect.stdout);
    assert.equal(doc.status.id, img.id);
    assert.deepEqual(doc.status.repoTags, [`${ref}:1.0`]);
    assert.equal(doc.status.uid.value, "1002");
    assert.equal(doc.info.imageSpec.config.User, "1002");
  });

  test("pull with --creds against a token-auth registry; wrong creds fail", async () => {
    const bad = await crictl("pull", "--creds", "bob:nope", `${reg.host}/crictl/private`);
    assert.notEqual(bad.exitCode, 0);
    assert.match(bad.stderr, /refused a token/);
    const good = await crictl("pull", "--creds", "bob:pw-bob", `${reg.host}/crictl/private`);
    assert.equal(good.exitCode, 0, good.stderr);
  });

  test("imagefsinfo reports the image store", async () => {
    const r = await crictl("imagefsinfo");
    assert.equal(r.exitCode, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    const fs = doc.status?.imageFilesystems?.[0] ?? doc.status;
    assert.match(JSON.stringify(fs), /image/);
    assert.ok(Number(fs.usedBytes.value) > 1_000_000);
  });

  test("rmi removes by name and by ID; inspecti then fails; images is empty", async () => {
    const r1 = await crictl("rmi", `${ref}:1.0`);
    assert.equal(r1.exitCode, 0, r1.stderr);
    const ins = await crictl("inspecti", `${ref}:1.0`);
    assert.notEqual(ins.exitCode, 0);
    const ids = (await crictl("images", "-q")).stdout.trim().split("\n").filter(Boolean);
    const r2 = await crictl("rmi", ...ids);
    assert.equal(r2.exitCode, 0, r2.stderr);
    assert.equal((await crictl("images", "-q")).stdout.trim(), "");
  });
});
