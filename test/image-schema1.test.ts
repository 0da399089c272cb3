// Docker schema 1 manifests are refused over the wire with FAILED_PRECONDITION. docker-registry 2.8
// refuses schema 1 uploads (MANIFEST_INVALID), so this file serves one from a stand-in: a tiny HTTP
// server speaking just enough of the distribution API (/v2/ and GET manifests) for one repository,
// with the headers a real registry sends for such a manifest (the signed "prettyjws" form whose
// Docker-Content-Digest covers the payload without its signatures).
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { startRegistry } from "./harness/registry.js";

const sha256 = (b: string | Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** A schema 1 manifest as registries stored them: pretty JSON with a JWS "signatures" block spliced before the last brace. */
function schema1(name: string, tag: string): { signed: string; payloadDigest: string } {
  const payload = JSON.stringify({
    schemaVersion: 1, name, tag, architecture: "amd64",
    fsLayers: [{ blobSum: sha256("layer") }],
    history: [{ v1Compatibility: JSON.stringify({ id: createHash("sha256").update("id").digest("hex"), created: "2016-01-01T00:00:00Z" }) }],
  }, null, 3);
  const cut = payload.lastIndexOf("\n}");
  // The signature is not a valid one: berth must refuse the format before looking at signatures.
  const sig = { header: { alg: "ES256" }, signature: "c2lnbmF0dXJl", protected: Buffer.from(JSON.stringify({ formatLength: cut, formatTail: "Cn0" })).toString("base64url") };
  return { signed: `${payload.slice(0, cut)},\n   "signatures": [${JSON.stringify(sig)}]${payload.slice(cut)}`, payloadDigest: sha256(payload) };
}

async function startSchema1Registry(repo: string) {
  const served: string[] = [];
  const server = http.createServer((req, res) => {
    const url = req.url ?? "";
    if (url === "/v2/" || url === "/v2") {
      res.writeHead(200, { "content-type": "application/json", "docker-distribution-api-version": "registry/2.0" });
      return res.end("{}");
    }
    const m = new RegExp(`^/v2/${repo}/manifests/([A-Za-z0-9_.-]+)$`).exec(url);
    if (req.method === "GET" && m) {
      const { signed, payloadDigest } = schema1(repo, m[1]!);
      // "plain" serves the unsigned media type, as some registries did for schema 1 without signatures.
      const type = m[1] === "plain" ? "application/vnd.docker.distribution.manifest.v1+json" : "application/vnd.docker.distribution.manifest.v1+prettyjws";
      served.push(m[1]!);
      res.writeHead(200, { "content-type": type, "docker-content-digest": payloadDigest, "content-length": Buffer.byteLength(signed) });
      return res.end(signed);
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ errors: [{ code: "NAME_UNKNOWN", message: "stand-in serves one repository" }] }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    served,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

describe("Docker schema 1 manifests", () => {
  let stand: Awaited<ReturnType<typeof startSchema1Registry>>;
  let d: Berthd;
  before(async () => {
    stand = await startSchema1Registry("old/app");
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await stand?.close();
  });

  test("the real docker-registry refuses a schema 1 upload (why this file uses a stand-in)", async () => {
    const reg = await startRegistry();
    try {
      const res = await fetch(`${reg.url}/v2/old/app/manifests/latest`, {
        method: "PUT", headers: { "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws" }, body: schema1("old/app", "latest").signed,
      });
      assert.ok(res.status === 400 || res.status === 500, `upload refused: HTTP ${res.status}`);
      await res.text();
      assert.match(reg.logs(), /manifest schema v1 unsupported/);
    } finally {
      await reg.stop();
    }
  });

  test("PullImage of a schema 1 image is FAILED_PRECONDITION naming the manifest, and stores nothing", async () => {
    for (const tag of ["latest", "plain"]) {
      await assert.rejects(d.cri.image.pullImage({ image: { image: `${stand.host}/old/app:${tag}` } }), (e: { code: number; details: string }) => {
        assert.equal(e.code, status.FAILED_PRECONDITION, e.details);
        assert.match(e.details, /Docker schema 1/);
        assert.match(e.details, new RegExp(`old/app/manifests/${tag}`));
        assert.match(e.details, /re-push/);
        return true;
      });
    }
    assert.deepEqual(stand.served, ["latest", "plain"]);
    assert.deepEqual((await d.cri.image.listImages({})).images, []);
    assert.deepEqual(await readdir(path.join(d.root, "image", "blobs", "sha256")).catch(() => []), []);
  });
});
