// Applies one layer's tar entries to an empty layer directory, safely: every path is resolved
// component by component with lstat and never through a symlink, so no entry, symlink or
// hardlink can create or change anything outside `root`. OCI whiteouts become overlayfs
// whiteouts (0/0 character devices) and opaque directories (trusted.overlay.opaque=y).
import { constants } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink, unlink } from "node:fs/promises";
import path from "node:path";
import { isErrno } from "../errors.js";
import { makeNode } from "./mknod.js";
import { setXattr } from "./setfattr.js";
import type { TarEntry } from "./tar.js";

/** Bytes of a file's data gathered into one write while unpacking. */
const WRITE_BATCH = 1024 * 1024;

/** The buffers of `bufs` from byte `off` on (after a short writev). */
function remaining(bufs: Buffer[], off: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (off >= b.length) {
      off -= b.length;
      continue;
    }
    out.push(off > 0 ? b.subarray(off) : b);
    off = 0;
  }
  return out;
}

export class UnsafeEntry extends Error {}

export interface UnpackResult {
  /** Bytes of regular file content written. */
  bytes: number;
  /** Entries created (a rough inode count). */
  inodes: number;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

/** Splits an entry name into safe components; throws on absolute paths and "..". */
export function entryComponents(name: string, what = "entry"): string[] {
  if (name.startsWith("/")) throw new UnsafeEntry(`${what} "${name}" is an absolute path`);
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new UnsafeEntry(`${what} "${name}" climbs out with ".."`);
  if (parts.some((p) => p.includes("\0"))) throw new UnsafeEntry(`${what} "${name}" contains a NUL byte`);
  return parts;
}

export async function unpackLayer(root: string, entries: AsyncIterable<TarEntry>): Promise<UnpackResult> {
  const u = new Unpacker(root);
  for await (const e of entries) {
    try {
      await u.apply(e);
    } catch (err) {
      if (err instanceof UnsafeEntry) throw err;
      throw new Error(`unpacking entry "${e.name}": ${(err as Error).message}`, { cause: err });
    }
  }
  await u.finish();
  return { bytes: u.bytes, inodes: u.inodes };
}

class Unpacker {
  /** Relative directory paths known to be real directories (only berth writes here while unpacking). */
  private readonly dirs = new Set<string>([""]);
  private readonly dirTimes: Array<[string, number]> = [];
  bytes = 0;
  inodes = 0;

  constructor(private readonly root: string) {}

  private abs(rel: string): string {
    return rel === "" ? this.root : path.join(this.root, rel);
  }

  /** Makes sure every component of `parts` is a real directory inside root, creating missing ones. */
  private async ensureDirs(parts: string[], entry: string): Promise<void> {
    let rel = "";
    for (const p of parts) {
      rel = rel === "" ? p : `${rel}/${p}`;
      if (this.dirs.has(rel)) continue;
      let st;
      try {
        st = await lstat(this.abs(rel));
      } catch (err) {
        if (!isErrno(err, "ENOENT")) throw err;
        await mkdir(this.abs(rel), { mode: 0o755 });
        this.inodes++;
        this.dirs.add(rel);
        continue;
      }
      if (st.isSymbolicLink()) throw new UnsafeEntry(`entry "${entry}" would be written through the symlink "${rel}"`);
      if (!st.isDirectory()) throw new UnsafeEntry(`entry "${entry}" needs "${rel}" to be a directory, but it is not`);
      this.dirs.add(rel);
    }
  }

  /** Removes whatever is at rel so a new entry can take its place (a directory only for a non-directory). */
  private async clear(rel: string, keepDir: boolean): Promise<boolean> {
    let st;
    try {
      st = await lstat(this.abs(rel));
    } catch (err) {
      if (isErrno(err, "ENOENT")) return false;
      throw err;
    }
    if (st.isDirectory()) {
      if (keepDir) return true;
      await rm(this.abs(rel), { recursive: true, force: true });
      for (const d of [...this.dirs]) if (d === rel || d.startsWith(`${rel}/`)) this.dirs.delete(d);
      return false;
    }
    await unlink(this.abs(rel));
    return false;
  }

  async apply(e: TarEntry): Promise<void> {
    const parts = entryComponents(e.name);
    if (parts.length === 0) {
      // The layer root itself ("./"): take its ownership and mode, nothing else.
      if (e.type === "dir") await this.meta("", e, false);
      return;
    }
    const base = parts[parts.length - 1]!;
    const parentParts = parts.slice(0, -1);
    await this.ensureDirs(parentParts, e.name);
    const parent = parentParts.join("/");
    if (base === OPAQUE) {
      await setXattr(this.abs(parent), "trusted.overlay.opaque", Buffer.from("y"));
      return;
    }
    if (base.startsWith(WHITEOUT)) {
      const hidden = base.slice(WHITEOUT.length);
      if (hidden === "" || hidden === "." || hidden === "..") throw new UnsafeEntry(`whiteout "${e.name}" names no file`);
      const rel = parent === "" ? hidden : `${parent}/${hidden}`;
      await this.clear(rel, false);
      await makeNode(this.abs(rel), "char", 0, 0, 0);
      this.inodes++;
      return;
    }
    const rel = parts.join("/");
    const target = this.abs(rel);
    switch (e.type) {
      case "dir": {
        const exists = await this.clear(rel, true);
        if (!exists) {
          await mkdir(target, { mode: 0o700 });
          this.inodes++;
        }
        this.dirs.add(rel);
        await this.meta(rel, e, false);
        this.dirTimes.push([rel, e.mtime]);
        return;
      }
      case "file": {
        await this.clear(rel, false);
        const fh = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          // Chunks arrive at the size of the registry socket's reads (64 KiB); each write is a
          // thread-pool round trip, so they go out gathered, up to WRITE_BATCH at a time.
          let written = 0;
          let batch: Buffer[] = [];
          let batched = 0;
          const flush = async () => {
            let off = 0;
            while (off < batched) {
              const { bytesWritten } = await fh.writev(off === 0 ? batch : remaining(batch, off));
              off += bytesWritten;
            }
            written += batched;
            batch = [];
            batched = 0;
          };
          for await (const chunk of e.body()) {
            batch.push(chunk);
            batched += chunk.length;
            if (batched >= WRITE_BATCH) await flush();
          }
          if (batched > 0) await flush();
          this.bytes += written;
          await fh.chown(e.uid, e.gid);
          await fh.chmod(e.mode);
          await fh.utimes(e.mtime, e.mtime);
        } finally {
          await fh.close();
        }
        this.inodes++;
        await this.xattrs(rel, e);
        return;
      }
      case "symlink": {
        if (e.linkname === "") throw new UnsafeEntry(`symlink "${e.name}" has an empty target`);
        await this.clear(rel, false);
        // The target is stored as text and never followed by berth, so it may point anywhere.
        await symlink(e.linkname, target);
        this.inodes++;
        await this.meta(rel, e, true);
        return;
      }
      case "hardlink": {
        const srcParts = entryComponents(e.linkname, `hardlink target of "${e.name}"`);
        if (srcParts.length === 0) throw new UnsafeEntry(`hardlink "${e.name}" points at the layer root`);
        await this.ensureExistingDirs(srcParts.slice(0, -1), e.name);
        const src = this.abs(srcParts.join("/"));
        let st;
        try {
          st = await lstat(src);
        } catch (err) {
          if (isErrno(err, "ENOENT")) throw new UnsafeEntry(`hardlink "${e.name}" points at "${e.linkname}", which is not in this layer`);
          throw err;
        }
        if (st.isDirectory()) throw new UnsafeEntry(`hardlink "${e.name}" points at the directory "${e.linkname}"`);
        if (srcParts.join("/") === rel) return;
        await this.clear(rel, false);
        await link(src, target);
        return;
      }
      case "char":
      case "block":
      case "fifo": {
        await this.clear(rel, false);
        await makeNode(target, e.type, e.mode, e.devmajor, e.devminor);
        this.inodes++;
        await this.meta(rel, e, false);
        return;
      }
    }
  }

  /** Like ensureDirs, but for a hardlink source: every component must already exist as a real directory. */
  private async ensureExistingDirs(parts: string[], entry: string): Promise<void> {
    let rel = "";
    for (const p of parts) {
      rel = rel === "" ? p : `${rel}/${p}`;
      if (this.dirs.has(rel)) continue;
      const st = await lstat(this.abs(rel)).catch(() => undefined);
      if (st === undefined) throw new UnsafeEntry(`hardlink "${entry}" points through "${rel}", which is not in this layer`);
      if (st.isSymbolicLink()) throw new UnsafeEntry(`hardlink "${entry}" points through the symlink "${rel}"`);
      if (!st.isDirectory()) throw new UnsafeEntry(`hardlink "${entry}" points through "${rel}", which is not a directory`);
      this.dirs.add(rel);
    }
  }

  private async meta(rel: string, e: TarEntry, isLink: boolean): Promise<void> {
    const p = this.abs(rel);
    await lchown(p, e.uid, e.gid);
    // chmod after chown: chown clears the setuid and setgid bits.
    if (!isLink) await chmod(p, e.mode);
    if (isLink) await lutimes(p, e.mtime, e.mtime);
    await this.xattrs(rel, e);
  }

  private async xattrs(rel: string, e: TarEntry): Promise<void> {
    for (const [name, value] of e.xattrs) {
      // overlay's own attributes would let a layer forge redirects or opaque markers of its choosing.
      if (name.startsWith("trusted.overlay.")) throw new UnsafeEntry(`entry "${e.name}" carries the reserved xattr ${name}`);
      await setXattr(this.abs(rel), name, value);
    }
  }

  async finish(): Promise<void> {
    // Directory times last, deepest first: creating children changed them.
    for (const [rel, t] of this.dirTimes.reverse()) {
      if (!this.dirs.has(rel)) continue;
      await lutimes(this.abs(rel), t, t).catch(() => undefined);
    }
  }
}
