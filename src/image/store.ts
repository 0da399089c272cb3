// The image store: pulls images into the content and layer stores and keeps their metadata
// (tags, digests, layers) as crash-safe records under <root>/image/meta/images.
import { randomBytes } from "node:crypto";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config.js";
import { parseDuration } from "../config.js";
import { FailedPrecondition, InvalidArgument, wrap } from "../errors.js";
import { imageRootOf } from "../layout.js";
import type { Logger } from "../log.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { RecordStore } from "../store/records.js";
import { faultPoint } from "../faults.js";
import { credentialsFor } from "./auth.js";
import { ContentStore, DigestMismatch, sha256, verify } from "./content.js";
import { prewarmDecoder } from "./decode.js";
import { chainIds as computeChainIds, LayerStore, Semaphore } from "./layers.js";
import { formatPlatform, hostPlatform, parseManifest, selectPlatform, type ImageManifest } from "./manifest.js";
import { DIGEST, formatReference, parseReference, repoName } from "./reference.js";
import { PullProgress, type PullRecorder } from "./progress.js";
import { forgetCaBundles, RepositorySession, withRetries, type RegistryOptions } from "./registry.js";
import { OverlaySnapshots } from "./snapshots.js";
import type { Image, ImageConfigDocument, ImageStore, RegistryAuth } from "./types.js";

interface ImageRecord {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: number;
  /** The platform manifest the layers came from. */
  manifestDigest: string;
  /** The index or manifest list it was chosen from, if any. */
  indexDigest?: string;
  chainIds: string[];
  /** Milliseconds; settles which image holds a tag if a crash left two claiming it. */
  updated: number;
}

const ID_PREFIX = /^(?:sha256:)?([a-f0-9]{4,64})$/;
const hex = (d: string) => d.slice("sha256:".length);

/** The image keys a running store can take again (LIVE_KEYS in config.ts). */
export type RegistryConfig = Pick<Config["image"], "mirrors" | "insecure_registries" | "ca_files" | "pull_progress_timeout">;

function registryOptions(image: RegistryConfig): Omit<RegistryOptions, "log" | "userAgent"> {
  return {
    insecureRegistries: image.insecure_registries,
    mirrors: image.mirrors,
    caFiles: image.ca_files,
    progressTimeoutMs: parseDuration(image.pull_progress_timeout),
  };
}

export class LocalImageStore implements ImageStore {
  readonly imageRoot: string;
  private readonly content: ContentStore;
  /** The last blob scan of ImageFsInfo (scanIfChanged). */
  private blobs: BlobUsage | undefined;
  readonly layers: LayerStore;
  readonly snapshots: OverlaySnapshots;
  private readonly records: RecordStore<ImageRecord>;
  private readonly images = new Map<string, { rec: ImageRecord; config: ImageConfigDocument }>();
  /** Normalized tag or digest reference -> image ID. */
  private readonly refs = new Map<string, string>();
  private readonly pulls = new Map<string, Promise<Image>>();
  // Metadata commits can move a tag between images, touching several records: they run one at a
  // time, holding only record writes (downloads and unpacks run outside it).
  private readonly meta = new KeyedLock();
  private readonly pauseRef: string | undefined;
  private readonly progressIntervalMs: number;
  /** Where and how pulls reach registries; replaced whole by setRegistryConfig (a SIGHUP reload). */
  private registry: Omit<RegistryOptions, "log" | "userAgent">;
  /** The container using an image as a volume, if any (the container layer answers; see setVolumeUsers). */
  private volumeUser: (imageId: string) => string | undefined = () => undefined;

  constructor(private readonly config: Config, private readonly log: Logger, private readonly userAgent: string, private readonly recorder?: PullRecorder) {
    this.imageRoot = imageRootOf(config.root);
    const metaDir = path.join(this.imageRoot, "meta");
    this.content = new ContentStore(path.join(this.imageRoot, "blobs", "sha256"));
    this.layers = new LayerStore(this.imageRoot, metaDir, log, new Semaphore(config.image.max_concurrent_downloads));
    this.snapshots = new OverlaySnapshots(this.imageRoot, metaDir, this.layers, this, log);
    this.records = new RecordStore(path.join(metaDir, "images"));
    this.registry = registryOptions(config.image);
    this.progressIntervalMs = parseDuration(config.image.pull_progress_interval);
    try {
      this.pauseRef = formatReference(parseReference(config.image.pause_image));
    } catch {
      log.warn({ pause_image: config.image.pause_image }, "image.pause_image is not a valid reference; no image is pinned");
    }
  }

  /** New registry settings for the pulls that start from now on; CA files are read again. */
  setRegistryConfig(image: RegistryConfig): void {
    this.registry = registryOptions(image);
    forgetCaBundles();
  }

  /** Loads metadata, drops what a crash left half-done, and frees what nothing references. */
  async init(): Promise<void> {
    await mkdir(this.imageRoot, { recursive: true, mode: 0o711 });
    await this.content.init();
    await this.content.scan(true);
    await this.layers.load();
    const { records, problems } = await this.records.loadAll();
    for (const p of problems) this.log.warn(p, "corrupt image record quarantined");
    const sorted = [...records.values()].sort((a, b) => a.updated - b.updated);
    for (const rec of sorted) {
      const missing = rec.chainIds.filter((c) => !this.layers.get(c));
      const configBytes = await this.content.get(rec.id).catch((err) => {
        this.log.warn({ id: rec.id, err: (err as Error).message }, "image config blob unreadable");
        return undefined;
      });
      if (missing.length > 0 || !configBytes) {
        this.log.warn({ id: rec.id, missingLayers: missing.length, config: Boolean(configBytes) }, "image incomplete on disk: dropped");
        await this.records.delete(hex(rec.id));
        continue;
      }
      this.images.set(rec.id, { rec, config: JSON.parse(configBytes.toString("utf8")) as ImageConfigDocument });
      // Later records win a tag two records claim (a crash between moving a tag's two writes).
      for (const r of [...rec.repoTags, ...rec.repoDigests]) this.refs.set(r, rec.id);
    }
    for (const { rec } of this.images.values()) {
      const tags = rec.repoTags.filter((t) => this.refs.get(t) === rec.id);
      const digests = rec.repoDigests.filter((t) => this.refs.get(t) === rec.id);
      if (tags.length !== rec.repoTags.length || digests.length !== rec.repoDigests.length) {
        rec.repoTags = tags;
        rec.repoDigests = digests;
        await this.records.put(hex(rec.id), rec);
      }
      this.layers.hold(`image:${rec.id}`, rec.chainIds);
    }
    await this.snapshots.load();
    await this.layers.collectGarbage();
    await this.collectBlobs();
    this.log.info({ images: this.images.size }, "image store loaded");
  }

  private toImage(rec: ImageRecord, config: ImageConfigDocument): Image {
    return {
      id: rec.id,
      repoTags: [...rec.repoTags],
      repoDigests: [...rec.repoDigests],
      size: rec.size,
      config,
      chainIds: [...rec.chainIds],
      pinned: this.pauseRef !== undefined && rec.repoTags.includes(this.pauseRef),
    };
  }

  imageById(id: string): Image | undefined {
    const e = this.images.get(id);
    return e ? this.toImage(e.rec, e.config) : undefined;
  }

  private resolveId(ref: string, imageRef?: string): string | undefined {
    // ImageSpec.image_ref is the ID kubelet got back from PullImage: it names the image exactly.
    if (imageRef) {
      const id = this.resolveRef(imageRef);
      if (id) return id;
    }
    return ref ? this.resolveRef(ref) : undefined;
  }

  private resolveRef(ref: string): string | undefined {
    if (this.images.has(ref)) return ref;
    if (this.images.has(`sha256:${ref}`)) return `sha256:${ref}`;
    // A bare manifest or index digest (what a registry calls the image) names the image pulled from it.
    if (DIGEST.test(ref)) {
      for (const { rec } of this.images.values()) if (rec.manifestDigest === ref || rec.indexDigest === ref) return rec.id;
    }
    let parsed;
    try {
      parsed = parseReference(ref);
    } catch (err) {
      const m = ID_PREFIX.exec(ref);
      if (!m) throw err;
    }
    if (parsed) {
      const id = this.refs.get(formatReference(parsed));
      if (id) return id;
    }
    // A unique short ID, as `crictl inspecti 3f5` or `docker rmi 3f5` would use.
    const m = ID_PREFIX.exec(ref);
    if (m) {
      const hits = [...this.images.keys()].filter((id) => hex(id).startsWith(m[1]!));
      if (hits.length === 1) return hits[0];
    }
    return undefined;
  }

  async resolve(ref: string, imageRef?: string): Promise<Image | undefined> {
    const id = this.resolveId(ref, imageRef);
    return id ? this.imageById(id) : undefined;
  }

  async list(filterRef?: string, filterImageRef?: string): Promise<Image[]> {
    if (filterRef || filterImageRef) {
      const img = await this.resolve(filterRef ?? "", filterImageRef);
      return img ? [img] : [];
    }
    return [...this.images.values()].map((e) => this.toImage(e.rec, e.config));
  }

  async pull(refText: string, auth?: RegistryAuth): Promise<Image> {
    const ref = parseReference(refText);
    const key = formatReference(ref);
    let p = this.pulls.get(key);
    if (!p) {
      p = this.pullOnce(refText, auth).finally(() => this.pulls.delete(key));
      this.pulls.set(key, p);
    }
    return p;
  }

  private async pullOnce(refText: string, auth: RegistryAuth | undefined): Promise<Image> {
    const progress = new PullProgress(formatReference(parseReference(refText)), this.progressIntervalMs, this.log, this.recorder);
    try {
      const image = await this.pullWith(refText, auth, progress);
      progress.finish();
      return image;
    } catch (err) {
      progress.finish(err);
      throw err;
    }
  }

  private async pullWith(refText: string, auth: RegistryAuth | undefined, progress: PullProgress): Promise<Image> {
    const started = Date.now();
    const ref = parseReference(refText);
    const name = repoName(ref);
    // The layer decode thread starts while the manifest and config round trips run.
    prewarmDecoder();
    // A pull keeps the registry settings it started with, whatever a reload does meanwhile.
    const session = new RepositorySession(ref, credentialsFor(auth, ref.domain), { ...this.registry, log: this.log, userAgent: this.userAgent });
    const retries = <T>(what: string, fn: () => Promise<T>) => withRetries(what, this.log, fn);
    const top = await session.manifest(ref.digest ?? ref.tag!);
    const topDigest = sha256(top.bytes);
    if (ref.digest) verify(top.bytes, ref.digest, `manifest ${name}@${ref.digest}`);
    if (top.headerDigest && top.headerDigest.startsWith("sha256:") && top.headerDigest !== topDigest) {
      throw new DigestMismatch(`manifest ${formatReference(ref)}: registry says digest ${top.headerDigest} but the content hashes to ${topDigest}; nothing was stored`);
    }
    let doc = parseManifest(top.bytes, top.contentType);
    const blobs: Array<[string, Buffer, string]> = [[topDigest, top.bytes, "manifest"]];
    let manifestDigest = topDigest;
    let indexDigest: string | undefined;
    if (doc.kind === "index") {
      const want = hostPlatform();
      const desc = selectPlatform(doc, want);
      if (!desc) {
        const have = doc.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : "?")).join(", ");
        throw new FailedPrecondition(`image ${formatReference(ref)} has no manifest for ${formatPlatform(want)} (it has: ${have || "none"})`);
      }
      const m = await session.manifest(desc.digest);
      verify(m.bytes, desc.digest, `manifest ${desc.digest} for ${formatPlatform(want)}`);
      doc = parseManifest(m.bytes, m.contentType);
      if (doc.kind !== "manifest") throw new FailedPrecondition(`${desc.digest}: an index inside an index is not supported`);
      indexDigest = topDigest;
      manifestDigest = desc.digest;
      blobs.push([desc.digest, m.bytes, "manifest"]);
    }
    const manifest: ImageManifest = doc;
    const configDesc = manifest.config;
    const configBytes = (await this.content.get(configDesc.digest)) ?? (await session.smallBlob(configDesc.digest, 8 << 20));
    verify(configBytes, configDesc.digest, `image config ${configDesc.digest}`);
    blobs.push([configDesc.digest, configBytes, "image config"]);
    let config: ImageConfigDocument;
    try {
      config = JSON.parse(configBytes.toString("utf8")) as ImageConfigDocument;
    } catch (err) {
      throw new InvalidArgument(`image config ${configDesc.digest} is not JSON: ${(err as Error).message}`);
    }
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length || diffIds.some((d) => typeof d !== "string" || !DIGEST.test(d))) {
      throw new InvalidArgument(`image config ${configDesc.digest} lists ${Array.isArray(diffIds) ? diffIds.length : "no"} diff IDs for ${manifest.layers.length} layers`);
    }
    if (config.os && config.os !== "linux") throw new FailedPrecondition(`image ${formatReference(ref)} is for ${config.os}, not linux`);
    const chain = computeChainIds(diffIds);
    const id = configDesc.digest;
    const holder = `pull:${randomBytes(6).toString("hex")}`;
    this.layers.hold(holder, chain);
    let reused = 0;
    // The manifest(s) and config are stored while the layers download (they are verified
    // already); a failed pull takes them back out unless something else uses them.
    const blobsStored = Promise.allSettled(blobs.map(([digest, bytes, what]) => this.content.put(digest, bytes, what)));
    try {
      // allSettled: every layer has finished (or failed) before the pull's hold is released.
      const results = await Promise.allSettled(manifest.layers.map(async (layer, i) => {
        if (this.layers.get(chain[i]!)) {
          reused++;
          return;
        }
        await this.layers.ensure(chain[i]!, diffIds[i]!, {
          ...layer,
          open: () => session.blob(layer.digest),
          openAhead: async () => {
            const { res, start } = await session.openBlob(layer.digest);
            return { body: res, start };
          },
          received: progress.layer(layer.digest, layer.size),
        }, retries);
      }));
      progress.layerCounts(reused, chain.length - reused);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      await faultPoint("PullImage.after-layers");
      const notStored = (await blobsStored).find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (notStored) throw notStored.reason;
      await faultPoint("PullImage.after-blobs");
      const size = configDesc.size + manifest.layers.reduce((n, l) => n + l.size, 0);
      await this.commit(id, config, {
        tag: ref.tag ? `${name}:${ref.tag}` : undefined,
        digest: `${name}@${topDigest}`,
        size, manifestDigest, indexDigest, chainIds: chain,
      });
      await faultPoint("PullImage.after-record");
    } catch (err) {
      await blobsStored;
      await this.dropUnusedBlobs(blobs.map(([digest]) => digest)).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, "removing a failed pull's blobs"));
      throw wrap(`pulling image ${formatReference(ref)}`, err);
    } finally {
      await this.layers.release(holder);
    }
    this.log.info({ ref: formatReference(ref), id, layers: chain.length, reused, ms: Date.now() - started }, "image pulled");
    return this.imageById(id)!;
  }

  private async commit(id: string, config: ImageConfigDocument, p: { tag?: string; digest: string; size: number; manifestDigest: string; indexDigest?: string; chainIds: string[] }): Promise<void> {
    await this.meta.run("meta", async () => {
      const existing = this.images.get(id)?.rec;
      const rec: ImageRecord = existing
        ? { ...existing, repoTags: [...existing.repoTags], repoDigests: [...existing.repoDigests] }
        : { id, repoTags: [], repoDigests: [], size: p.size, manifestDigest: p.manifestDigest, chainIds: p.chainIds, updated: 0 };
      if (p.indexDigest) rec.indexDigest = p.indexDigest;
      if (p.tag && !rec.repoTags.includes(p.tag)) rec.repoTags.push(p.tag);
      if (!rec.repoDigests.includes(p.digest)) rec.repoDigests.push(p.digest);
      rec.updated = Date.now();
      await this.records.put(hex(id), rec);
      this.images.set(id, { rec, config });
      this.layers.hold(`image:${id}`, rec.chainIds);
      // The tag moves here: the image that had it loses it (it stays, untagged, until removed).
      for (const r of [p.tag, p.digest]) {
        if (!r) continue;
        const prev = this.refs.get(r);
        this.refs.set(r, id);
        if (prev && prev !== id) {
          const old = this.images.get(prev);
          if (old) {
            old.rec = { ...old.rec, repoTags: old.rec.repoTags.filter((t) => t !== r), repoDigests: old.rec.repoDigests.filter((t) => t !== r), updated: Date.now() };
            await this.records.put(hex(prev), old.rec);
          }
        }
      }
    });
  }

  /** Who uses an image as a volume: such an image is not removed while they exist. */
  setVolumeUsers(user: (imageId: string) => string | undefined): void {
    this.volumeUser = user;
  }

  /**
   * Removes the image `ref` names (a tag, a digest reference or an ID) with all its tags and
   * digests, as the CRI specifies and containerd 2.x does (docs/images.md). Unknown images are
   * not an error. Concurrent removals of one image all succeed: the one that finds it under the
   * lock removes it and frees its layers and blobs.
   */
  async remove(ref: string, imageRef?: string): Promise<void> {
    const id = this.resolveId(ref, imageRef);
    if (!id) return;
    const removed = await this.meta.run("meta", async () => {
      const entry = this.images.get(id);
      if (!entry) return false;
      const user = this.volumeUser(id);
      if (user) throw new FailedPrecondition(`image ${id} is in use as an image volume by container ${user}: remove the container first`);
      await this.records.delete(hex(id));
      this.images.delete(id);
      for (const r of [...entry.rec.repoTags, ...entry.rec.repoDigests]) if (this.refs.get(r) === id) this.refs.delete(r);
      // Under the lock: a pull committing the same image again re-holds "image:<id>" after this.
      await this.layers.release(`image:${id}`);
      return true;
    });
    if (!removed) return;
    await this.collectBlobs();
    this.log.info({ ref, id }, "image removed");
  }

  private usedBlobs(): Set<string> {
    const used = new Set<string>();
    for (const { rec } of this.images.values()) {
      used.add(rec.id);
      used.add(rec.manifestDigest);
      if (rec.indexDigest) used.add(rec.indexDigest);
    }
    return used;
  }

  /** Deletes manifests, indexes and configs no image record names. */
  private async collectBlobs(): Promise<void> {
    // A pull in flight writes its blobs before its record: leave them while any pull runs.
    if (this.pulls.size > 0) return;
    const used = this.usedBlobs();
    for (const d of (await this.content.scan()).digests) if (!used.has(d)) await this.content.delete(d);
  }

  /** A failed pull's blobs, unless an image names them or another pull (which may need them) runs. */
  private async dropUnusedBlobs(digests: string[]): Promise<void> {
    // this.pulls still holds the failing pull itself.
    if (this.pulls.size > 1) return;
    const used = this.usedBlobs();
    for (const d of digests) if (!used.has(d)) await this.content.delete(d);
  }

  async fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number; timestamp: bigint }> {
    const blobs = (this.blobs = await scanIfChanged(this.content, this.blobs));
    const layers = this.layers.usage();
    return {
      mountpoint: this.imageRoot,
      usedBytes: blobs.bytes + layers.bytes,
      inodesUsed: blobs.count + layers.inodes,
      timestamp: BigInt(Date.now()) * 1_000_000n,
    };
  }
}

/** How long blob usage is trusted without a look at the dir, for changes made behind berthd's back. */
export const BLOB_RECHECK_MS = 60_000;

/**
 * Blobs are immutable, so their total changes only when one is added or removed. berthd's own
 * writes and deletes bump content.changes, so while that count holds the last scan is answered
 * without any I/O (kubelet asks every 10 s); a hand edit of the dir moves its mtime, looked at
 * once BLOB_RECHECK_MS has passed. The mtime is trusted only once it is older than the clock's
 * granularity could hide (a change in the same tick as the scan).
 */
export async function scanIfChanged(content: ContentStore, last: BlobUsage | undefined, now = Date.now()): Promise<BlobUsage> {
  const changes = content.changes;
  if (last?.changes === changes && now - last.checkedAt < BLOB_RECHECK_MS) return last;
  const st = await stat(content.dir, { bigint: true });
  const dirId = `${st.ino}:${st.mtimeNs}`;
  if (last?.dirId === dirId && last.changes === changes) return { ...last, checkedAt: now };
  const { bytes, digests } = await content.scan();
  const settled = BigInt(Date.now()) * 1_000_000n - st.mtimeNs > 2_000_000_000n;
  return { dirId: settled ? dirId : "", changes, checkedAt: settled ? now : 0, bytes, count: digests.length };
}

export interface BlobUsage {
  /** The blob dir's inode and mtime when scanned; "" when too recent to trust. */
  dirId: string;
  /** content.changes when scanned. */
  changes: number;
  /** When the dir was last looked at (0: look again next time). */
  checkedAt: number;
  bytes: number;
  count: number;
}

function safeFormat(ref: string): string | undefined {
  try {
    return formatReference(parseReference(ref));
  } catch {
    return undefined;
  }
}
