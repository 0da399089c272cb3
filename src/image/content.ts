// Content-addressed blobs (manifests, indexes, configs) under <root>/image/blobs/sha256.
// A blob is verified against its digest before it is written (temp file, fsync, rename),
// so the store never holds bytes that do not match their name.
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { isErrno, InvalidArgument } from "../errors.js";
import { writeFileAtomic } from "../store/records.js";
import { DIGEST } from "./reference.js";

export class DigestMismatch extends InvalidArgument {}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Throws DigestMismatch when bytes do not hash to `digest`. */
export function verify(bytes: Buffer, digest: string, what: string): void {
  const got = sha256(bytes);
  if (got !== digest) throw new DigestMismatch(`${what}: content digest is ${got}, expected ${digest}; nothing was stored`);
}

export class ContentStore {
  /** Bumped after every blob this store writes or deletes: usage computed at one count holds until the next. */
  changes = 0;

  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  private file(digest: string): string {
    if (!DIGEST.test(digest)) throw new InvalidArgument(`"${digest}" is not a sha256 digest`);
    return path.join(this.dir, digest.slice("sha256:".length));
  }

  async put(digest: string, bytes: Buffer, what: string): Promise<void> {
    verify(bytes, digest, what);
    if (await this.has(digest)) return;
    await writeFileAtomic(this.file(digest), bytes, 0o644);
    this.changes++;
  }

  async has(digest: string): Promise<boolean> {
    return stat(this.file(digest)).then(() => true, () => false);
  }

  /** Reads a blob and checks it again: a corrupt blob on disk is reported, not trusted. */
  async get(digest: string): Promise<Buffer | undefined> {
    try {
      const bytes = await readFile(this.file(digest));
      verify(bytes, digest, `stored blob ${digest}`);
      return bytes;
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
  }

  async delete(digest: string): Promise<void> {
    await unlink(this.file(digest)).then(() => this.changes++, (err) => {
      if (!isErrno(err, "ENOENT")) throw err;
    });
  }

  /** Every blob digest present; with cleanTemps, leftover temp files (a kill mid-write) are removed. */
  async scan(cleanTemps = false): Promise<{ digests: string[]; bytes: number }> {
    const digests: string[] = [];
    let bytes = 0;
    for (const name of await readdir(this.dir)) {
      const full = path.join(this.dir, name);
      if (name.startsWith(".tmp-")) {
        // Only on start: while berthd runs, a temp file may be a write in progress.
        if (cleanTemps) await unlink(full).catch(() => undefined);
        continue;
      }
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      // A blob another call deletes between readdir and stat is simply gone.
      const st = await stat(full).catch((err) => {
        if (isErrno(err, "ENOENT")) return undefined;
        throw err;
      });
      if (!st) continue;
      digests.push(`sha256:${name}`);
      bytes += st.size;
    }
    return { digests, bytes };
  }
}
