// Builds test images from busybox-static and pushes them to a test registry through the
// distribution API: any layers and files (hostile ones too), an image config (User, Env,
// Entrypoint, Cmd, WorkingDir, StopSignal, Labels), OCI or Docker schema2 media types,
// gzip/zstd/uncompressed layers, indexes with several platforms, and several tags.
import type { ImageRunConfig } from "../../src/image/types.js";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import type { TestRegistry } from "./registry.js";

export type EntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface LayerEntry {
  /** The name exactly as written into the tar (so "../x" and "/etc/x" are possible). */
  path: string;
  type?: EntryType;
  content?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  /** Seconds since the epoch. */
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** Written as pax SCHILY.xattr.<name> records. */
  xattrs?: Record<string, string | Buffer>;
}

export type Compression = "gzip" | "zstd" | "none";

export interface LayerSpec {
  entries: LayerEntry[];
  compression?: Compression;
}

/** The image config's `config` object, as berth reads it. */
export type ImageConfigSpec = ImageRunConfig;

export interface ImageSpec {
  layers: LayerSpec[];
  config?: ImageConfigSpec;
  /** "oci" (default) or "docker" (schema2). */
  mediaTypes?: "oci" | "docker";
  os?: string;
  architecture?: string;
  variant?: string;
}

export interface PushedImage {
  /** repository path inside the registry, e.g. "test/busybox". */
  repo: string;
  /** "sha256:<config digest>" = the image ID berth reports. */
  id: string;
  manifestDigest: string;
  layerDigests: string[];
  diffIds: string[];
  /** Compressed layer sizes + config size (what berth reports as size). */
  size: number;
}

export interface PushedIndex {
  repo: string;
  indexDigest: string;
  images: PushedImage[];
}

const MT = {
  oci: { manifest: "application/vnd.oci.image.manifest.v1+json", index: "application/vnd.oci.image.index.v1+json", config: "application/vnd.oci.image.config.v1+json" },
  docker: { manifest: "application/vnd.docker.distribution.manifest.v2+json", index: "application/vnd.docker.distribution.manifest.list.v2+json", config: "application/vnd.docker.container.image.v1+json" },
};

function layerMediaType(kind: "oci" | "docker", c: Compression): string {
  if (kind === "docker") {
    if (c === "zstd") throw new Error("Docker schema2 has no zstd layer type");
    return c === "gzip" ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : "application/vnd.docker.image.rootfs.diff.tar";
  }
  return c === "gzip" ? "application/vnd.oci.image.layer.v1.tar+gzip" : c === "zstd" ? "application/vnd.oci.image.layer.v1.tar+zstd" : "application/vnd.oci.image.layer.v1.tar";
}

export const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

// ---- tar writing (ustar + pax for long names, big values and xattrs) ----

function octal(n: number, len: number): string {
  return n.toString(8).padStart(len - 1, "0") + "\0";
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function header(name: string, flag: string, size: number, e: Partial<LayerEntry>): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, "utf8");
  h.write(octal(e.mode ?? 0o644, 8), 100, "latin1");
  h.write(octal(e.uid ?? 0, 8), 108, "latin1");
  h.write(octal(e.gid ?? 0, 8), 116, "latin1");
  h.write(octal(size, 12), 124, "latin1");
  h.write(octal(e.mtime ?? 1_700_000_000, 12), 136, "latin1");
  h.write("        ", 148, "latin1");
  h.write(flag, 156, "latin1");
  h.write((e.linkname ?? "").slice(0, 100), 157, "utf8");
  h.write("ustar\0", 257, "latin1");
  h.write("00", 263, "latin1");
  h.write(octal(e.devmajor ?? 0, 8), 329, "latin1");
  h.write(octal(e.devminor ?? 0, 8), 337, "latin1");
  let sum = 0;
  for (const c of h) sum += c;
  h.write(octal(sum, 7) + " ", 148, "latin1");
  return h;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

/** Writes a tar of `entries`, in order, exactly as given. */
export function buildTar(entries: LayerEntry[]): Buffer {
  const out: Buffer[] = [];
  const flags: Record<EntryType, string> = { file: "0", hardlink: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" };
  for (const e of entries) {
    const type = e.type ?? "file";
    const body = type === "file" ? Buffer.from(e.content ?? "") : Buffer.alloc(0);
    const pax: Buffer[] = [];
    if (Buffer.byteLength(e.path) > 100) pax.push(paxRecord("path", Buffer.from(e.path)));
    if (e.linkname && Buffer.byteLength(e.linkname) > 100) pax.push(paxRecord("linkpath", Buffer.from(e.linkname)));
    for (const [k, v] of Object.entries(e.xattrs ?? {})) pax.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.from(v)));
    if (pax.length > 0) {
      const data = Buffer.concat(pax);
      out.push(header("PaxHeader", "x", data.length, {}), data, pad(data.length));
    }
    const mode = e.mode ?? (type === "dir" ? 0o755 : type === "symlink" ? 0o777 : 0o644);
    out.push(header(e.path, flags[type], body.length, { ...e, mode }), body, pad(body.length));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

let busyboxBytes: Buffer | undefined;

/** A busybox-static root: /bin/busybox plus applet symlinks, /etc/passwd with www-data, /tmp. */
export async function busyboxEntries(applets = ["sh", "ls", "cat", "echo", "sleep", "id", "top", "true", "env"]): Promise<LayerEntry[]> {
  busyboxBytes ??= await readFile("/bin/busybox");
  return [
    { path: "bin/", type: "dir" },
    { path: "bin/busybox", content: busyboxBytes, mode: 0o755 },
    ...applets.map((a): LayerEntry => ({ path: `bin/${a}`, type: "symlink", linkname: "busybox" })),
    { path: "etc/", type: "dir" },
    { path: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n" },
    { path: "etc/group", content: "root:x:0:\nwww-data:x:33:\n" },
    { path: "tmp/", type: "dir", mode: 0o1777 },
  ];
}

function compress(tar: Buffer, c: Compression): Promise<Buffer> {
  if (c === "gzip") return Promise.resolve(gzipSync(tar));
  if (c === "none") return Promise.resolve(tar);
  return execa("zstd", ["-q", "-c", "-3"], { input: tar, encoding: "buffer" }).then((r) => Buffer.from(r.stdout));
}

// ---- registry API ----

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(method: string, url: string, headers: Record<string, string>, body?: Buffer, ca?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith("https:") ? https : http;
    const req = mod.request(url, { method, ca, headers: body ? { ...headers, "content-length": String(body.length) } : headers }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

class Pusher {
  private authorization: string | undefined;
  constructor(private readonly reg: TestRegistry, private readonly repo: string) {}

  private async call(method: string, url: string, headers: Record<string, string>, body?: Buffer): Promise<Reply> {
    for (let round = 0; round < 2; round++) {
      const h = this.authorization ? { ...headers, authorization: this.authorization } : headers;
      const r = await request(method, url, h, body, this.reg.ca);
      if (r.status !== 401 || round > 0 || !this.reg.pushAuth) return r;
      const basic = Buffer.from(`${this.reg.pushAuth.username}:${this.reg.pushAuth.password}`).toString("base64");
      const challenge = String(r.headers["www-authenticate"] ?? "");
      if (/^basic\b/i.test(challenge)) {
        this.authorization = `Basic ${basic}`;
        continue;
      }
      const realm = /realm="([^"]+)"/.exec(challenge)?.[1];
      const service = /service="([^"]+)"/.exec(challenge)?.[1] ?? "";
      if (!realm) return r;
      const u = new URL(realm);
      u.searchParams.set("service", service);
      u.searchParams.set("scope", `repository:${this.repo}:pull,push`);
      const t = await request("GET", u.toString(), { authorization: `Basic ${basic}` }, undefined, this.reg.ca);
      this.authorization = `Bearer ${(JSON.parse(t.body.toString()) as { token: string }).token}`;
    }
    throw new Error("unreachable");
  }

  async blob(data: Buffer): Promise<string> {
    const digest = digestOf(data);
    const head = await this.call("HEAD", `${this.reg.url}/v2/${this.repo}/blobs/${digest}`, {});
    if (head.status === 200) return digest;
    const start = await this.call("POST", `${this.reg.url}/v2/${this.repo}/blobs/uploads/`, {}, Buffer.alloc(0));
    if (start.status !== 202) throw new Error(`blob upload start: HTTP ${start.status} ${start.body.toString()}`);
    const loc = new URL(String(start.headers.location), this.reg.url);
    loc.searchParams.set("digest", digest);
    const put = await this.call("PUT", loc.toString(), { "content-type": "application/octet-stream" }, data);
    if (put.status !== 201) throw new Error(`blob upload: HTTP ${put.status} ${put.body.toString()}`);
    return digest;
  }

  async manifest(reference: string, mediaType: string, data: Buffer): Promise<void> {
    const r = await this.call("PUT", `${this.reg.url}/v2/${this.repo}/manifests/${reference}`, { "content-type": mediaType }, data);
    if (r.status !== 201) throw new Error(`manifest put ${reference}: HTTP ${r.status} ${r.body.toString()}`);
  }
}

async function pushOne(p: Pusher, repo: string, spec: ImageSpec): Promise<{ image: PushedImage; manifest: Buffer; mediaType: string }> {
  const kind = spec.mediaTypes ?? "oci";
  const layers: Array<{ mediaType: string; digest: string; size: number }> = [];
  const diffIds: string[] = [];
  for (const l of spec.layers) {
    const tar = buildTar(l.entries);
    diffIds.push(digestOf(tar));
    const c = l.compression ?? "gzip";
    const blob = await compress(tar, c);
    layers.push({ mediaType: layerMediaType(kind, c), digest: await p.blob(blob), size: blob.length });
  }
  const arch = spec.architecture ?? "amd64";
  const config = Buffer.from(JSON.stringify({
    created: "2024-01-01T00:00:00Z",
    architecture: arch,
    ...(spec.variant ? { variant: spec.variant } : {}),
    os: spec.os ?? "linux",
    config: spec.config ?? {},
    rootfs: { type: "layers", diff_ids: diffIds },
    history: spec.layers.map(() => ({ created: "2024-01-01T00:00:00Z", created_by: "berth test harness" })),
  }));
  const configDigest = await p.blob(config);
  const mediaType = MT[kind].manifest;
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: { mediaType: MT[kind].config, digest: configDigest, size: config.length },
    layers,
  }));
  const manifestDigest = digestOf(manifest);
  await p.manifest(manifestDigest, mediaType, manifest);
  return {
    image: { repo, id: configDigest, manifestDigest, layerDigests: layers.map((l) => l.digest), diffIds, size: config.length + layers.reduce((n, l) => n + l.size, 0) },
    manifest,
    mediaType,
  };
}

/** Pushes one image to `repo` and tags it with each of `tags`. */
export async function pushImage(reg: TestRegistry, repo: string, spec: ImageSpec, tags: string[] = ["latest"]): Promise<PushedImage> {
  const p = new Pusher(reg, repo);
  const { image, manifest, mediaType } = await pushOne(p, repo, spec);
  for (const t of tags) await p.manifest(t, mediaType, manifest);
  return image;
}

/** Pushes an index (OCI) or manifest list (Docker) over one image per platform, tagged with `tags`. */
export async function pushIndex(reg: TestRegistry, repo: string, specs: ImageSpec[], tags: string[] = ["latest"], mediaTypes: "oci" | "docker" = "oci"): Promise<PushedIndex> {
  const p = new Pusher(reg, repo);
  const images: PushedImage[] = [];
  const manifests: unknown[] = [];
  for (const s of specs) {
    const { image, manifest, mediaType } = await pushOne(p, repo, { ...s, mediaTypes });
    images.push(image);
    manifests.push({
      mediaType, digest: image.manifestDigest, size: manifest.length,
      platform: { os: s.os ?? "linux", architecture: s.architecture ?? "amd64", ...(s.variant ? { variant: s.variant } : {}) },
    });
  }
  const mediaType = MT[mediaTypes].index;
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }));
  const indexDigest = digestOf(index);
  await p.manifest(indexDigest, mediaType, index);
  for (const t of tags) await p.manifest(t, mediaType, index);
  return { repo, indexDigest, images };
}

/** The host's architecture in OCI's words, for building a matching platform. */
export function hostArch(): string {
  return ({ x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[process.arch] ?? process.arch;
}
