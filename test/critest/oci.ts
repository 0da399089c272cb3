// Image documents for the critest images: configs, manifests and manifest lists, in Docker schema 2 or OCI
// media types, built as bytes whose digests the registry then checks.
import { createHash } from "node:crypto";

export type Flavour = "docker" | "oci";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** A blob (layer, config or manifest) as the registry stores it. */
export interface Blob {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

/** A layer plus the digest of its uncompressed tar (the config's diff_id). */
export interface Layer extends Blob {
  diffId: string;
}

export interface ImageSettings {
  entrypoint?: string[];
  cmd?: string[];
  user?: string;
  env?: string[];
  workingDir?: string;
  exposedPorts?: string[];
  labels?: Record<string, string>;
  stopSignal?: string;
}

export const MEDIA = {
  docker: {
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    list: "application/vnd.docker.distribution.manifest.list.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  },
  oci: {
    manifest: "application/vnd.oci.image.manifest.v1+json",
    list: "application/vnd.oci.image.index.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar+gzip",
  },
} as const;

export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Fixed so that rebuilding an image gives the same digests.
const CREATED = "2024-01-01T00:00:00Z";

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

function blob(mediaType: string, doc: unknown): Blob {
  const bytes = Buffer.from(JSON.stringify(doc));
  return { mediaType, digest: sha256(bytes), bytes };
}

export function descriptor(b: Blob, platform?: Platform): Descriptor {
  return { mediaType: b.mediaType, digest: b.digest, size: b.bytes.length, ...(platform ? { platform } : {}) };
}

/** The image config: what ImageStatus reports (user, env, entrypoint) and the layer chain it checks. */
export function imageConfig(flavour: Flavour, platform: Platform, layers: Layer[], s: ImageSettings): Blob {
  const config: Record<string, unknown> = { Env: s.env ?? [DEFAULT_PATH] };
  if (s.entrypoint) config.Entrypoint = s.entrypoint;
  if (s.cmd) config.Cmd = s.cmd;
  if (s.user) config.User = s.user;
  if (s.workingDir) config.WorkingDir = s.workingDir;
  if (s.exposedPorts?.length) config.ExposedPorts = Object.fromEntries(s.exposedPorts.map((p) => [p, {}]));
  if (s.labels) config.Labels = s.labels;
  if (s.stopSignal) config.StopSignal = s.stopSignal;
  return blob(MEDIA[flavour].config, {
    created: CREATED,
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: CREATED, created_by: "berth test/critest image builder" })),
  });
}

export function imageManifest(flavour: Flavour, config: Blob, layers: Layer[]): Blob {
  return blob(MEDIA[flavour].manifest, {
    schemaVersion: 2,
    mediaType: MEDIA[flavour].manifest,
    config: descriptor(config),
    layers: layers.map((l) => descriptor(l)),
  });
}

export function manifestList(flavour: Flavour, manifests: Array<{ manifest: Blob; platform: Platform }>): Blob {
  return blob(MEDIA[flavour].list, {
    schemaVersion: 2,
    mediaType: MEDIA[flavour].list,
    manifests: manifests.map((m) => descriptor(m.manifest, m.platform)),
  });
}
