// A crash-safe store of JSON records, one file per record under a folder.
// A write goes to a temp file, is fsynced, renamed over the record and the folder is
// fsynced: a kill -9 at any point leaves the old record or the new one, never half of
// one. Each file carries a sha256 of its body, so a torn or corrupt record is detected
// on load, moved to <dir>/quarantine and reported instead of stopping the daemon.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { causedByNoSpace, isErrno, noSpaceAt } from "../errors.js";

const SUFFIX = ".json";
const TEMP_PREFIX = ".tmp-";

export interface LoadProblem {
  file: string;
  reason: string;
  quarantinedAs: string;
}

/** Encodes a record with its checksum; bigint values are kept as {"$bigint": "…"}. */
export function encodeRecord(value: unknown): string {
  const body = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? { $bigint: v.toString() } : v));
  const sum = createHash("sha256").update(body).digest("hex");
  return `{"sha256":"${sum}","body":${body}}\n`;
}

/** Decodes what encodeRecord wrote; throws when the checksum or the JSON is wrong. */
export function decodeRecord<T>(text: string): T {
  const m = /^\{"sha256":"([0-9a-f]{64})","body":([\s\S]*)\}\n?$/.exec(text);
  if (!m) throw new Error("not a berth record (truncated or foreign file)");
  const body = m[2]!;
  if (createHash("sha256").update(body).digest("hex") !== m[1]) throw new Error("checksum mismatch (torn or corrupt write)");
  return JSON.parse(body, (_k, v) =>
    v !== null && typeof v === "object" && typeof v.$bigint === "string" && Object.keys(v).length === 1 ? BigInt(v.$bigint) : v,
  ) as T;
}

/** Writes `data` to `file` atomically and durably (temp, fsync, rename, fsync dir). */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TEMP_PREFIX}${path.basename(file)}.${randomBytes(6).toString("hex")}`);
  try {
    const fh = await open(tmp, "w", mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    // A failed write (a full disk) leaves the old file and no temp behind.
    await unlink(tmp).catch(() => undefined);
    if (causedByNoSpace(err)) throw noSpaceAt(`write ${file}`, dir, err);
    throw err;
  }
  await syncDir(dir);
}

export async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$/;

export class RecordStore<T> {
  constructor(readonly dir: string) {}

  private file(id: string): string {
    if (!ID.test(id) || id.includes("..")) throw new Error(`invalid record id "${id}"`);
    return path.join(this.dir, id + SUFFIX);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async put(id: string, value: T): Promise<void> {
    await writeFileAtomic(this.file(id), encodeRecord(value));
  }

  async get(id: string): Promise<T | undefined> {
    try {
      return decodeRecord<T>(await readFile(this.file(id), "utf8"));
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
  }

  async delete(id: string): Promise<void> {
    try {
      await unlink(this.file(id));
      await syncDir(this.dir);
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
    }
  }

  /** Loads every record; leftover temp files are removed, corrupt records quarantined and reported. */
  async loadAll(): Promise<{ records: Map<string, T>; problems: LoadProblem[] }> {
    await this.init();
    const records = new Map<string, T>();
    const problems: LoadProblem[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const full = path.join(this.dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await unlink(full).catch(() => undefined);
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      try {
        records.set(name.slice(0, -SUFFIX.length), decodeRecord<T>(await readFile(full, "utf8")));
      } catch (err) {
        const qdir = path.join(this.dir, "quarantine");
        await mkdir(qdir, { recursive: true });
        const dest = path.join(qdir, `${name}.${Date.now()}`);
        await rename(full, dest).catch(() => undefined);
        problems.push({ file: full, reason: (err as Error).message, quarantinedAs: dest });
      }
    }
    return { records, problems };
  }
}
