import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { FailedPrecondition, InvalidArgument } from "../errors.js";
import { chainIds } from "./layers.js";
import { MT, parseManifest, selectPlatform, type ImageIndex, type Platform } from "./manifest.js";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const manifest = (mediaType: string | undefined, layerType = "application/vnd.oci.image.layer.v1.tar+gzip") => Buffer.from(JSON.stringify({
  schemaVersion: 2, ...(mediaType ? { mediaType } : {}),
  config: { mediaType: MT.ociConfig, digest: D("a"), size: 10 },
  layers: [{ mediaType: layerType, digest: D("b"), size: 20 }],
}));

test("manifests parse by media type, and the header and document must agree", () => {
  const m = parseManifest(manifest(MT.ociManifest), MT.ociManifest);
  assert.equal(m.kind, "manifest");
  assert.equal(m.kind === "manifest" && m.layers[0]!.compression, "gzip");
  assert.equal(parseManifest(manifest(undefined), "application/json").kind, "manifest");
  assert.equal(parseManifest(manifest(undefined, "application/vnd.oci.image.layer.v1.tar+zstd"), MT.ociManifest).kind, "manifest");
  const table: Array<[Buffer, string, new (...a: never[]) => Error, RegExp]> = [
    [manifest(MT.ociManifest), MT.dockerManifest, InvalidArgument, /declares mediaType .* served it as/],
    [Buffer.from(JSON.stringify({ schemaVersion: 1, name: "x", fsLayers: [] })), MT.dockerSchema1Signed, FailedPrecondition, /schema 1/],
    [Buffer.from("{}"), MT.dockerSchema1, FailedPrecondition, /schema 1/],
    [Buffer.from("not json"), MT.ociManifest, InvalidArgument, /not JSON/],
    [manifest(MT.ociManifest, "application/x-tar+lz4"), MT.ociManifest, FailedPrecondition, /unsupported media type/],
    [Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: "sha256:zz", size: 1 }, layers: [] })), MT.ociManifest, InvalidArgument, /config: digest/],
    [Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: "application/vnd.cncf.helm.config.v1+json", digest: D("a"), size: 1 }, layers: [] })), MT.ociManifest, FailedPrecondition, /not a container image/],
    [Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.foo" })), "application/vnd.foo", FailedPrecondition, /unsupported manifest media type/],
    [Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: D("a"), size: 1 }, layers: Array.from({ length: 501 }, () => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: D("b"), size: 1 })) })), MT.ociManifest, FailedPrecondition, /lists 501 layers; overlayfs stacks at most 500/],
  ];
  for (const [bytes, ct, cls, re] of table) assert.throws(() => parseManifest(bytes, ct), (e: unknown) => e instanceof cls && re.test((e as Error).message), re.source);
});

test("platform selection from an index", () => {
  const entry = (architecture: string, variant?: string, os = "linux") => ({ mediaType: MT.ociManifest, digest: D(architecture.length.toString(16)), size: 1, platform: { os, architecture, ...(variant ? { variant } : {}) } });
  const index = (...m: ReturnType<typeof entry>[]): ImageIndex => ({ kind: "index", mediaType: MT.ociIndex, manifests: m });
  const pick = (i: ImageIndex, p: Platform) => selectPlatform(i, p)?.platform;
  assert.deepEqual(pick(index(entry("arm64", "v8"), entry("amd64")), { os: "linux", architecture: "amd64" }), { os: "linux", architecture: "amd64" });
  assert.deepEqual(pick(index(entry("arm64"), entry("amd64")), { os: "linux", architecture: "arm64", variant: "v8" }), { os: "linux", architecture: "arm64" });
  assert.deepEqual(pick(index(entry("arm", "v6"), entry("arm", "v7")), { os: "linux", architecture: "arm", variant: "v7" }), { os: "linux", architecture: "arm", variant: "v7" });
  assert.deepEqual(pick(index(entry("arm", "v5"), entry("arm", "v6")), { os: "linux", architecture: "arm", variant: "v7" }), { os: "linux", architecture: "arm", variant: "v6" });
  assert.equal(pick(index(entry("arm", "v8")), { os: "linux", architecture: "arm", variant: "v7" }), undefined);
  assert.equal(pick(index(entry("amd64", undefined, "windows")), { os: "linux", architecture: "amd64" }), undefined);
  assert.equal(pick(index(entry("unknown", undefined, "unknown")), { os: "linux", architecture: "amd64" }), undefined);
});

test("chain IDs follow the OCI definition", () => {
  const a = D("1");
  const b = D("2");
  const ids = chainIds([a, b]);
  assert.equal(ids[0], a);
  // sha256("sha256:111…1 sha256:222…2")
  assert.equal(ids[1], `sha256:${createHash("sha256").update(`${a} ${b}`).digest("hex")}`);
  assert.deepEqual(chainIds([]), []);
});


