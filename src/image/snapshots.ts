// Container root filesystems: an overlay of an image's layers (read-only lowers) with a
// per-container upper and work dir under <root>/image/snapshots/<key>. Lower dirs are given
// relative to the layers folder (mount runs there), so 100+ layers fit in one options page.
import { chown, lstat, mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, wrap } from "../errors.js";
import type { Logger } from "../log.js";
import { KeyedLock } from "../store/keyed-lock.js";
import { RecordStore } from "../store/records.js";
import { LayerStore } from "./layers.js";
import { idmapMount } from "../native/native.js";
import { isMountpoint, mountOverlay, unmount, unmountAllUnder } from "./mount.js";
import type { Image, Snapshots, UsernsRef } from "./types.js";

interface SnapshotRecord {
  key: string;
  imageId: string;
  chainIds: string[];
  created: number;
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface ImageLookup {
  /** The image with this exact ID, synchronously (so taking layer holds cannot race a removal). */
  imageById(id: string): Image | undefined;
  resolve(ref: string): Promise<Image | undefined>;
}

export class OverlaySnapshots implements Snapshots {
  readonly dir: string;
  private readonly records: RecordStore<SnapshotRecord>;
  private readonly known = new Map<string, SnapshotRecord>();
  private readonly lock = new KeyedLock();

  constructor(imageRoot: string, metaDir: string, private readonly layers: LayerStore, private readonly images: ImageLookup, private readonly log: Logger) {
    this.dir = path.join(imageRoot, "snapshots");
    this.records = new RecordStore(path.join(metaDir, "snapshots"));
  }

  /** Loads snapshot records and takes their layer holds; removes directories with no record. */
  async load(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o711 });
    const { records, problems } = await this.records.loadAll();
    for (const p of problems) this.log.warn(p, "corrupt snapshot record quarantined");
    for (const rec of records.values()) {
      this.known.set(rec.key, rec);
      this.layers.hold(`snapshot:${rec.key}`, rec.chainIds);
    }
    for (const name of await readdir(this.dir)) {
      if (this.known.has(name)) continue;
      const p = path.join(this.dir, name);
      // The rootfs, and idmapped layers a crash left attached: never rm through a mount.
      await unmountAllUnder(p);
      await rm(p, { recursive: true, force: true });
    }
  }

  private paths(key: string) {
    const base = path.join(this.dir, key);
    return { base, upper: path.join(base, "upper"), work: path.join(base, "work"), rootfs: path.join(base, "rootfs"), idmap: path.join(base, "idmap") };
  }

  private checkKey(key: string): void {
    if (!KEY.test(key)) throw new InvalidArgument(`snapshot key "${key}" must be 1-128 of [A-Za-z0-9_.-]`);
  }

  async prepare(key: string, imageId: string, opts: { userns?: UsernsRef } = {}): Promise<{ rootfs: string }> {
    this.checkKey(key);
    return this.lock.run(key, async () => {
      let rec = this.known.get(key);
      if (rec && rec.imageId !== imageId) throw new AlreadyExists(`snapshot ${key} exists for image ${rec.imageId}, not ${imageId}`);
      if (!rec) {
        const id = this.images.imageById(imageId)?.id ?? (await this.images.resolve(imageId))?.id;
        // Looked up again synchronously with the hold below: a removal cannot slip in between.
        const image = id === undefined ? undefined : this.images.imageById(id);
        if (!image) throw new NotFound(`image ${imageId} not found: pull it before creating a container from it`);
        const missing = image.chainIds.filter((c) => !this.layers.get(c));
        if (missing.length > 0) throw new FailedPrecondition(`image ${image.id} is missing layers ${missing.join(", ")}: pull it again`);
        this.layers.hold(`snapshot:${key}`, image.chainIds);
        const fresh: SnapshotRecord = { key, imageId, chainIds: image.chainIds, created: Date.now() };
        // A mount whose record a crash kept from being written is removed by load(): mount while recording.
        const [saved, mounted] = await Promise.allSettled([this.records.put(key, fresh), this.mount(fresh, true, opts.userns)]);
        if (saved.status === "rejected" || mounted.status === "rejected") {
          if (mounted.status === "fulfilled") await unmount(mounted.value).catch(() => undefined);
          await rm(this.paths(key).base, { recursive: true, force: true }).catch(() => undefined);
          if (saved.status === "fulfilled") await this.records.delete(key).catch(() => undefined);
          await this.layers.release(`snapshot:${key}`);
          if (saved.status === "rejected") throw wrap(`recording snapshot ${key}`, saved.reason);
          throw (mounted as PromiseRejectedResult).reason;
        }
        this.known.set(key, fresh);
        return { rootfs: mounted.value };
      }
      return { rootfs: await this.mount(rec, false, opts.userns) };
    });
  }

  /** The layer dirs of an image's chain, top first, relative to the layers folder. */
  private lowerDirs(what: string, imageId: string, chainIds: string[]): string[] {
    const lower: string[] = [];
    for (const c of [...chainIds].reverse()) {
      const layer = this.layers.get(c);
      if (!layer) throw new FailedPrecondition(`${what}: layer ${c} of image ${imageId} is gone`);
      lower.push(this.layers.relPath(layer));
    }
    return lower;
  }

  /**
   * Mounts an overlay of `lower` (relative to the layers folder) at `target`. With `userns`,
   * overlayfs itself cannot be idmapped on this kernel, but its layers can: each lower is
   * attached idmapped under `idmapDir`, the overlay is made on those, and they are detached
   * (the overlay keeps them), so files owned by 0 in the image show as the mapped root.
   */
  private async overlay(lower: string[], target: string, rw: { upper: string; work: string } | undefined, userns: UsernsRef | undefined, idmapDir: string): Promise<void> {
    if (!userns) {
      await mountOverlay({ lower, cwd: this.layers.dir, ...rw, target });
      return;
    }
    await mkdir(idmapDir, { recursive: true, mode: 0o700 });
    try {
      const mapped = lower.map((_l, i) => String(i));
      for (const [i, l] of lower.entries()) {
        await mkdir(path.join(idmapDir, mapped[i]!), { mode: 0o700 });
        await idmapMount(path.join(this.layers.dir, l), path.join(idmapDir, mapped[i]!), userns.path).catch((err: Error) => {
          throw new Error(`idmap layer ${l} through ${userns.path}: ${err.message}`, { cause: err });
        });
      }
      // The overlay's root dir is the upper dir's (not idmapped): the pod's root owns it.
      if (rw) await chown(rw.upper, userns.rootUid, userns.rootGid);
      await mountOverlay({ lower: mapped, cwd: idmapDir, ...rw, target });
    } finally {
      await unmountAllUnder(idmapDir);
      await rm(idmapDir, { recursive: true, force: true });
    }
  }

  /**
   * A read-only overlay of an image's layers (no upper dir) at `target` (an image volume),
   * idmapped through `userns` when given. The caller unmounts it.
   */
  async mountImage(imageId: string, target: string, userns?: UsernsRef): Promise<void> {
    const image = this.images.imageById(imageId);
    if (!image) throw new NotFound(`image ${imageId} not found: pull it before mounting it as a volume`);
    const lower = this.lowerDirs(`image volume at ${target}`, image.id, image.chainIds);
    // Without an upper dir overlayfs needs two lowers.
    while (lower.length < 2) lower.push(LayerStore.EMPTY);
    await mkdir(target, { recursive: true, mode: 0o755 });
    try {
      await this.overlay(lower, target, undefined, userns, `${target}.idmap`);
    } catch (err) {
      throw wrap(`mounting image ${image.id} read-only at ${target}`, err);
    }
  }

  /** Mounts the snapshot's rootfs; `fresh`: the snapshot was just made, so nothing is mounted there yet. */
  private async mount(rec: SnapshotRecord, fresh = false, userns?: UsernsRef): Promise<string> {
    const p = this.paths(rec.key);
    if (!fresh && (await isMountpoint(p.rootfs))) return p.rootfs;
    const lower = this.lowerDirs(`snapshot ${rec.key}`, rec.imageId, rec.chainIds);
    if (lower.length === 0) lower.push(LayerStore.EMPTY);
    await mkdir(p.base, { recursive: true, mode: 0o755 });
    await Promise.all([
      mkdir(p.upper, { recursive: true, mode: 0o755 }),
      mkdir(p.work, { recursive: true, mode: 0o700 }),
      mkdir(p.rootfs, { recursive: true, mode: 0o755 }),
    ]);
    try {
      await this.overlay(lower, p.rootfs, { upper: p.upper, work: p.work }, userns, p.idmap);
    } catch (err) {
      throw wrap(`mounting the rootfs of snapshot ${rec.key}`, err);
    }
    return p.rootfs;
  }

  async restore(key: string, imageId: string): Promise<{ rootfs: string }> {
    return this.prepare(key, imageId);
  }

  async remove(key: string): Promise<void> {
    this.checkKey(key);
    await this.lock.run(key, async () => {
      const p = this.paths(key);
      try {
        await unmountAllUnder(p.base);
      } catch (err) {
        throw wrap(`unmounting the rootfs of snapshot ${key}`, err);
      }
      await rm(p.base, { recursive: true, force: true });
      await this.records.delete(key);
      this.known.delete(key);
      await this.layers.release(`snapshot:${key}`);
    });
  }

  async usage(key: string): Promise<{ bytes: number; inodes: number }> {
    this.checkKey(key);
    if (!this.known.has(key)) throw new NotFound(`snapshot ${key} not found`);
    let bytes = 0;
    let inodes = 0;
    const walk = async (dir: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        return;
      }
      for (const n of names) {
        const full = path.join(dir, n);
        const st = await lstat(full).catch(() => undefined);
        if (!st) continue;
        inodes++;
        bytes += st.blocks * 512;
        if (st.isDirectory()) await walk(full);
      }
    };
    await walk(this.paths(key).upper);
    return { bytes, inodes };
  }

  /** Keys of the snapshots that exist (for the container layer's restore on start). */
  keys(): string[] {
    return [...this.known.keys()];
  }
}
