// Manifest documents (OCI and Docker schema2), checked before they are trusted, and the
// choice of the host's platform from an index or manifest list.
import { FailedPrecondition, InvalidArgument } from "../errors.js";
import { DIGEST } from "./reference.js";

/** overlayfs's lower-layer limit (the kernel's OVL_MAX_STACK): an image with more can be pulled but never mounted. */
export const MAX_LAYERS = 500;

export const MT = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** What berth asks a registry for, best first; schema1 is accepted only to refuse it clearly. */
export const MANIFEST_ACCEPT = [MT.ociIndex, MT.dockerList, MT.ociManifest, MT.dockerManifest, `${MT.dockerSchema1Signed};q=0.1`, `${MT.dockerSchema1};q=0.1`].join(", ");

export type Compression = "gzip" | "zstd" | "none";

const LAYER_TYPES: Record<string, Compression> = {
  "application/vnd.oci.image.layer.v1.tar": "none",
  "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar": "none",
};

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  kind: "manifest";
  mediaType: string;
  config: Descriptor;
  layers: Array<Descriptor & { compression: Compression }>;
}

export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Descriptor[];
}

function descriptor(v: unknown, where: string): Descriptor {
  const d = v as Partial<Descriptor> | null;
  if (typeof d !== "object" || d === null) throw new InvalidArgument(`${where}: not a descriptor object`);
  if (typeof d.mediaType !== "string") throw new InvalidArgument(`${where}: mediaType missing`);
  if (typeof d.digest !== "string" || !DIGEST.test(d.digest)) throw new InvalidArgument(`${where}: digest ${JSON.stringify(d.digest)} is not sha256:<64 hex>`);
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) throw new InvalidArgument(`${where}: size ${JSON.stringify(d.size)} is not a byte count`);
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.platform && typeof d.platform === "object") {
    const p = d.platform as Partial<Platform>;
    out.platform = { os: String(p.os ?? ""), architecture: String(p.architecture ?? "") };
    if (p.variant) out.platform.variant = String(p.variant);
  }
  return out;
}

/**
 * Parses a manifest or index. `contentType` is the registry's Content-Type; the document's own
 * mediaType must agree with it, so a registry cannot make berth read one kind as another.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ImageManifest | ImageIndex {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidArgument(`manifest is not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new InvalidArgument("manifest is not a JSON object");
  const header = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  if (doc.schemaVersion === 1 || header === MT.dockerSchema1 || header === MT.dockerSchema1Signed) {
    throw new FailedPrecondition("image uses Docker schema 1 manifests, which berth does not support (deprecated since 2017): rebuild or re-push it with a current tool");
  }
  if (doc.schemaVersion !== 2) throw new InvalidArgument(`manifest schemaVersion ${JSON.stringify(doc.schemaVersion)} is not 2`);
  const generic = header === "" || header === "application/json" || header === "application/octet-stream" || header === "text/plain";
  if (declared && !generic && declared !== header) {
    throw new InvalidArgument(`manifest declares mediaType ${declared} but the registry served it as ${header}`);
  }
  let mediaType = declared ?? (generic ? undefined : header);
  if (mediaType === undefined) mediaType = Array.isArray(doc.manifests) ? MT.ociIndex : MT.ociManifest;
  switch (mediaType) {
    case MT.ociIndex:
    case MT.dockerList: {
      if (!Array.isArray(doc.manifests)) throw new InvalidArgument(`${mediaType} document has no manifests array`);
      return { kind: "index", mediaType, manifests: doc.manifests.map((m, i) => descriptor(m, `manifests[${i}]`)) };
    }
    case MT.ociManifest:
    case MT.dockerManifest: {
      const config = descriptor(doc.config, "config");
      if (config.mediaType !== MT.ociConfig && config.mediaType !== MT.dockerConfig) {
        throw new FailedPrecondition(`manifest config has media type ${config.mediaType}: not a container image`);
      }
      if (!Array.isArray(doc.layers)) throw new InvalidArgument("manifest has no layers array");
      if (doc.layers.length > MAX_LAYERS) {
        throw new FailedPrecondition(`manifest lists ${doc.layers.length} layers; overlayfs stacks at most ${MAX_LAYERS}, so the image could never run`);
      }
      const layers = doc.layers.map((l, i) => {
        const d = descriptor(l, `layers[${i}]`);
        const compression = LAYER_TYPES[d.mediaType];
        if (compression === undefined) throw new FailedPrecondition(`layers[${i}] has unsupported media type ${d.mediaType}`);
        return { ...d, compression };
      });
      return { kind: "manifest", mediaType, config, layers };
    }
    default:
      throw new FailedPrecondition(`unsupported manifest media type ${mediaType}`);
  }
}

/** The platform berth runs containers for, in OCI's words. */
export function hostPlatform(): Platform {
  const arch = ({ x64: "amd64", ia32: "386", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64", mips64el: "mips64le" } as Record<string, string>)[process.arch] ?? process.arch;
  const p: Platform = { os: "linux", architecture: arch };
  if (arch === "arm64") p.variant = "v8";
  if (arch === "arm") {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    p.variant = `v${v ?? 7}`;
  }
  return p;
}

/** Picks the manifest for `want` from an index: exact variant first, then a compatible one. */
export function selectPlatform(index: ImageIndex, want: Platform): Descriptor | undefined {
  const candidates = index.manifests.filter((m) =>
    (m.mediaType === MT.ociManifest || m.mediaType === MT.dockerManifest) &&
    m.platform !== undefined && m.platform.os === want.os && m.platform.architecture === want.architecture);
  const variantOf = (p: Platform) => p.variant ?? (p.architecture === "arm64" ? "v8" : "");
  const exact = candidates.find((m) => variantOf(m.platform!) === variantOf(want));
  if (exact) return exact;
  if (want.architecture === "arm") {
    // Older arm variants run on newer cores: v7 runs v6 and v5 images.
    const level = (p: Platform) => Number.parseInt(variantOf(p).slice(1) || "7", 10);
    const ok = candidates.filter((m) => level(m.platform!) <= level(want)).sort((a, b) => level(b.platform!) - level(a.platform!));
    return ok[0];
  }
  return candidates.find((m) => variantOf(m.platform!) === "") ?? (want.architecture === "amd64" ? candidates[0] : undefined);
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}
