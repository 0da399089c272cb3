// Unpacked layers, one directory per chain ID under <root>/image/layers/<n>, shared by every
// image and container that stacks them. A short numeric directory name keeps overlay option
// strings small. A layer is unpacked into tmp-<n> straight from the registry stream while
// the compressed digest and the diff ID are checked, then renamed into place and recorded;
// anything not recorded is removed on start. Layers are freed when no holder (image,
// container snapshot, pull in progress) is left.
import { createHash, type Hash } from "node:crypto";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { PassThrough, Transform, type Duplex, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { causedByNoSpace, InvalidArgument, noSpaceAt, wrap } from "../errors.js";
import type { Logger } from "../log.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { RecordStore } from "../store/records.js";
import { faultPoint } from "../faults.js";
import { DigestMismatch } from "./content.js";
import { LayerDecoder, type Digests } from "./decode.js";
import type { Compression } from "./manifest.js";
import { readTar, TarError } from "./tar.js";
import { UnsafeEntry, unpackLayer } from "./unpack.js";
import { zstdDecompressor } from "./zstd.js";

export interface LayerRecord {
  chainId: string;
  diffId: string;
  /** Directory number under layers/. */
  id: number;
  bytes: number;
  inodes: number;
}

export interface LayerSource {
  digest: string;
  size: number;
  compression: Compression;
  open(): Promise<Readable>;
  /** Like open, with the body left unread until start() (a layer waiting for a download slot). */
  openAhead?(): Promise<{ body: Readable; start(): void }>;
  /** Told the compressed bytes received so far by this attempt, at each chunk (pull progress; a retry starts at 0 again). */
  received?(bytes: number): void;
}

/** Chain IDs from diff IDs, bottom first (OCI image spec: ChainID(L0|..|Ln) = sha256(ChainID(..n-1) + " " + DiffID(Ln))). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash("sha256").update(`${prev} ${d}`).digest("hex")}`);
  }
  return out;
}

/** Bounds work running at once (layer downloads across all pulls). */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

/** A layer's response, opened while it waits for a download slot; an error meanwhile is kept for later. */
interface Parked {
  body: Readable;
  start(): void;
  error: Error | undefined;
}

function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

const hex = (digest: string) => digest.slice("sha256:".length);
// zlib's default 16 KiB output chunks cost a callback, two hash updates and a file write each:
// at 16 KiB a layer's data spends more time in those round trips than in the disk.
const INFLATE_CHUNK = 256 * 1024;
/** Layers from this size up are hashed and gunzipped on the decode worker (smaller ones cost less than the hand-off). */
const OFF_THREAD_MIN = 512 * 1024;

export class LayerStore {
  readonly dir: string;
  private readonly records: RecordStore<LayerRecord>;
  private readonly byChain = new Map<string, LayerRecord>();
  private readonly inflight = new Map<string, Promise<LayerRecord>>();
  private readonly holders = new Map<string, Set<string>>();
  private readonly heldBy = new Map<string, string[]>();
  private readonly lock = new KeyedLock();
  /**
   * Responses opened ahead of a download slot (as many as there are slots): the registry's time to
   * first byte, often longer than a layer's transfer on a fast link, overlaps the running downloads.
   */
  private readonly ahead: Semaphore;
  private nextId = 1;

  constructor(imageRoot: string, metaDir: string, private readonly log: Logger, private readonly downloads: Semaphore) {
    this.ahead = new Semaphore(downloads.limit);
    this.dir = path.join(imageRoot, "layers");
    this.records = new RecordStore(path.join(metaDir, "layers"));
  }

  /** The directory overlay's lowerdir names for an empty image (overlay needs at least one lower). */
  static readonly EMPTY = "empty";

  async load(): Promise<void> {
    await mkdir(path.join(this.dir, LayerStore.EMPTY), { recursive: true, mode: 0o755 });
    const { records, problems } = await this.records.loadAll();
    for (const p of problems) this.log.warn(p, "corrupt layer record quarantined");
    const names = new Set(await readdir(this.dir));
    for (const [key, rec] of records) {
      if (!names.has(String(rec.id)) || hex(rec.chainId) !== key) {
        this.log.warn({ chainId: rec.chainId, id: rec.id }, "layer record without its directory: dropped");
        await this.records.delete(key);
        continue;
      }
      this.byChain.set(rec.chainId, rec);
      this.nextId = Math.max(this.nextId, rec.id + 1);
    }
    const known = new Set([...this.byChain.values()].map((r) => String(r.id)));
    for (const name of names) {
      if (name === LayerStore.EMPTY || known.has(name)) continue;
      // Partial unpacks (tmp-*) and directories whose record never got written.
      this.log.info({ dir: name }, "removing unfinished layer directory");
      await rm(path.join(this.dir, name), { recursive: true, force: true });
      const n = Number.parseInt(name.replace(/^tmp-/, ""), 10);
      if (Number.isInteger(n)) this.nextId = Math.max(this.nextId, n + 1);
    }
  }

  get(chainId: string): LayerRecord | undefined {
    return this.byChain.get(chainId);
  }

  /** Directory name relative to `dir` (what overlay's lowerdir lists). */
  relPath(rec: LayerRecord): string {
    return String(rec.id);
  }

  usage(): { bytes: number; inodes: number } {
    let bytes = 0;
    let inodes = 0;
    for (const r of this.byChain.values()) {
      bytes += r.bytes;
      inodes += r.inodes;
    }
    return { bytes, inodes };
  }

  /** Marks `chainIds` as used by `holder` (replacing what it held before). Synchronous on purpose. */
  hold(holder: string, ids: string[]): void {
    this.dropHolder(holder);
    this.heldBy.set(holder, [...ids]);
    for (const c of ids) {
      let s = this.holders.get(c);
      if (!s) this.holders.set(c, (s = new Set()));
      s.add(holder);
    }
  }

  private dropHolder(holder: string): string[] {
    const prev = this.heldBy.get(holder) ?? [];
    this.heldBy.delete(holder);
    for (const c of prev) {
      const s = this.holders.get(c);
      s?.delete(holder);
      if (s && s.size === 0) this.holders.delete(c);
    }
    return prev;
  }

  /** Releases `holder` and deletes the layers nobody holds any more. */
  async release(holder: string): Promise<void> {
    const prev = this.dropHolder(holder);
    await this.deleteUnheld(prev);
  }

  /** Deletes every layer nobody holds (on start, after images and snapshots took theirs). */
  async collectGarbage(): Promise<void> {
    await this.deleteUnheld([...this.byChain.keys()]);
  }

  private async deleteUnheld(candidates: string[]): Promise<void> {
    // Taken out of the map before any await, so no new holder can find a layer being deleted.
    const doomed: LayerRecord[] = [];
    for (const c of candidates) {
      const rec = this.byChain.get(c);
      if (rec && !this.holders.has(c) && !this.inflight.has(c)) {
        this.byChain.delete(c);
        doomed.push(rec);
      }
    }
    for (const rec of doomed) {
      await this.lock.run(rec.chainId, async () => {
        await this.records.delete(hex(rec.chainId));
        await rm(path.join(this.dir, String(rec.id)), { recursive: true, force: true });
      });
      this.log.debug({ chainId: rec.chainId, id: rec.id }, "layer removed");
    }
  }

  /** The layer for chainId, unpacked from `source` unless present; concurrent callers share one unpack. */
  async ensure(chainId: string, diffId: string, source: LayerSource, retries: <T>(what: string, fn: () => Promise<T>) => Promise<T>): Promise<LayerRecord> {
    const have = this.byChain.get(chainId);
    if (have) return have;
    let p = this.inflight.get(chainId);
    if (!p) {
      // A retry opens its request inside its download slot (a parked response may be what failed).
      let attempt = 0;
      p = this.lock
        .run(chainId, () => retries(`layer ${source.digest}`, () => this.unpackOnce(chainId, diffId, source, attempt++ === 0)))
        .finally(() => this.inflight.delete(chainId));
      this.inflight.set(chainId, p);
    }
    return p;
  }

  /** Opens the layer's response while its download waits for a slot (holding one of the `ahead` places). */
  private async openAhead(open: NonNullable<LayerSource["openAhead"]>): Promise<Parked> {
    await this.ahead.acquire();
    try {
      const { body, start } = await open();
      const parked: Parked = { body, start, error: undefined };
      // Until the pipeline takes it, an error (a reset) is kept rather than left unhandled.
      body.on("error", (err: Error) => {
        parked.error ??= err;
      });
      return parked;
    } catch (err) {
      this.ahead.release();
      throw err;
    }
  }

  private async unpackOnce(chainId: string, diffId: string, source: LayerSource, openAhead: boolean): Promise<LayerRecord> {
    const id = this.nextId++;
    const tmp = path.join(this.dir, `tmp-${id}`);
    const started = Date.now();
    await mkdir(tmp, { mode: 0o755 });
    try {
      const parked = openAhead && source.openAhead ? await this.openAhead(source.openAhead) : undefined;
      // Only the download and unpack take a download slot: the rename and the record's fsyncs
      // below let the next layer start.
      const result = await this.downloads.run(async () => {
        if (parked) this.ahead.release();
        let received = 0;
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            received += chunk.length;
            source.received?.(received);
            if (received > source.size) cb(new DigestMismatch(`layer ${source.digest}: registry sent more than the ${source.size} bytes the manifest declares; nothing was stored`));
            else cb(null, chunk);
          },
        });
        let unpacked = { bytes: 0, inodes: 0 };
        const unpack = async (stream: AsyncIterable<Buffer>) => {
          unpacked = await unpackLayer(tmp, readTar(stream));
        };
        let digests: Digests;
        let body: Readable;
        if (parked) {
          if (parked.error) throw parked.error;
          parked.start();
          body = parked.body;
        } else {
          body = await source.open();
        }
        if (source.compression !== "zstd" && source.size >= OFF_THREAD_MIN) {
          // Hashing and gunzip on the decode worker; the tar is unpacked here as it comes back.
          const decoder = new LayerDecoder(source.compression === "gzip", INFLATE_CHUNK);
          await pipeline(body, counter, decoder, unpack);
          digests = decoder.digests();
        } else {
          const compressed = createHash("sha256");
          const diff = createHash("sha256");
          const decompress: Duplex = source.compression === "gzip" ? createGunzip({ chunkSize: INFLATE_CHUNK }) : source.compression === "zstd" ? zstdDecompressor() : new PassThrough();
          await pipeline(body, counter, hashing(compressed), decompress, hashing(diff), unpack);
          digests = { compressed: `sha256:${compressed.digest("hex")}`, diff: `sha256:${diff.digest("hex")}` };
        }
        if (received !== source.size || digests.compressed !== source.digest) {
          throw new DigestMismatch(`layer ${source.digest}: received ${received} bytes with digest ${digests.compressed} (manifest says ${source.size} bytes, ${source.digest}); nothing was stored`);
        }
        if (digests.diff !== diffId) throw new DigestMismatch(`layer ${source.digest}: uncompressed digest ${digests.diff} does not match the config's diff ID ${diffId}; nothing was stored`);
        return unpacked;
      });
      await faultPoint("PullImage.after-layer-unpack");
      await rename(tmp, path.join(this.dir, String(id)));
      await faultPoint("PullImage.after-layer-dir");
      const rec: LayerRecord = { chainId, diffId, id, bytes: result.bytes, inodes: result.inodes };
      try {
        await this.records.put(hex(chainId), rec);
      } catch (err) {
        await rm(path.join(this.dir, String(id)), { recursive: true, force: true });
        throw err;
      }
      this.byChain.set(chainId, rec);
      await faultPoint("PullImage.after-layer-record");
      this.log.debug({ chainId, digest: source.digest, ms: Date.now() - started, bytes: result.bytes }, "layer unpacked");
      return rec;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      if (err instanceof UnsafeEntry) throw new InvalidArgument(`layer ${source.digest} is unsafe: ${err.message}; nothing was stored`, { cause: err });
      if (err instanceof DigestMismatch) throw err;
      if (causedByNoSpace(err)) throw noSpaceAt(`unpack layer ${source.digest} into ${tmp}; nothing was stored`, this.dir, err);
      // Bytes that do not decode (a truncated or corrupt stream) cannot be what the digest names.
      if (err instanceof TarError || isZlibError(err)) throw new DigestMismatch(`layer ${source.digest}: the registry sent content that is not a ${source.compression === "none" ? "" : `${source.compression} `}tar stream (${(err as Error).message}): corrupt, or not the content its digest names; nothing was stored`, { cause: err });
      throw wrap(`layer ${source.digest} (nothing was stored)`, err);
    }
  }
}

/** zlib's decode failures (Z_DATA_ERROR, Z_BUF_ERROR: "unexpected end of file", ...). */
function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && code.startsWith("Z_");
}
