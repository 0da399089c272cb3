// Crash recovery of image pulls: berthd is killed with SIGKILL (BERTH_FAULT_AT) at every step
// of PullImage, restarted on the same dirs, and must list either the whole image or none of
// it, keep no partial layer, blob or record, and pull it again cleanly.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { FAULT_POINTS } from "../src/faults.js";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

const PULL_POINTS = FAULT_POINTS.filter((p) => p.startsWith("PullImage."));

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((n) => n !== "empty" && n !== "quarantine").sort();
}

describe("image pull recovery after kill -9", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let img: PushedImage;
  let ref: string;
  let survived = 0;
  const layers = () => names(path.join(d.root, "image", "layers"));
  const blobs = () => names(path.join(d.root, "image", "blobs", "sha256"));
  const records = async (kind: string) => (await names(path.join(d.root, "image", "meta", kind))).filter((n) => n.endsWith(".json"));

  before(async () => {
    reg = await startRegistry();
    img = await pushImage(reg, "rel/app", {
      layers: [{ entries: await busyboxEntries() }, { entries: [{ path: "etc/motd", content: "recovered\n" }], compression: "none" }],
      config: { Cmd: ["sh"] },
    });
    ref = `${reg.host}/rel/app:latest`;
    d = await startBerthd();
  });

  after(async () => {
    process.stderr.write(`# PullImage faults injected and survived: ${survived} of ${PULL_POINTS.length}\n`);
    await d?.cleanup();
    await reg?.stop();
  });

  for (const point of PULL_POINTS) {
    test(`kill -9 at ${point}: the image is whole or absent, nothing partial is left, the pull works again`, async () => {
      await d.stop();
      d = await d.restart({ env: { BERTH_FAULT_AT: point } });
      await assert.rejects(d.cri.image.pullImage({ image: { image: ref } }));
      await d.stop();
      assert.equal(d.proc.signalCode, "SIGKILL");
      assert.match(d.logs(), new RegExp(`fault point ${point.replace(/\./g, "\\.")} reached`));

      d = await d.restart({ env: {} });
      const listed = (await d.cri.image.listImages({})).images;
      if (point === "PullImage.after-record") {
        assert.deepEqual(listed.map((i) => i.id), [img.id], "the committed image survives");
        assert.equal((await layers()).length, 2);
      } else {
        assert.deepEqual(listed, [], "an uncommitted pull leaves no image");
        assert.deepEqual(await layers(), [], "no layer without an image, no partial unpack");
        assert.deepEqual(await blobs(), [], "no blob without an image");
        assert.deepEqual(await records("layers"), []);
      }
      assert.ok(!(await layers()).some((n) => n.startsWith("tmp-")));
      // pull again, then remove: the store is empty afterwards
      assert.equal((await d.cri.image.pullImage({ image: { image: ref } })).imageRef, img.id);
      assert.equal((await d.cri.image.imageStatus({ image: { image: ref } })).image?.id, img.id);
      await d.cri.image.removeImage({ image: { image: img.id } });
      assert.deepEqual((await d.cri.image.listImages({})).images, []);
      assert.deepEqual(await layers(), []);
      assert.deepEqual(await blobs(), []);
      assert.deepEqual(await records("images"), []);
      assert.deepEqual(await records("layers"), []);
      survived++;
    });
  }
});
