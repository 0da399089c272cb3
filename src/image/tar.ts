// A streaming tar reader: ustar, pax (local and global headers, SCHILY.xattr) and GNU long
// names/links and base-256 numbers. Bodies are streamed, never buffered whole; metadata
// records are capped so a hostile archive cannot make berth allocate without bound.

export type EntryType = "file" | "hardlink" | "symlink" | "char" | "block" | "dir" | "fifo";

export interface TarEntry {
  name: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (pax may give a fraction). */
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
  /** The entry's bytes; call at most once. Unread bytes are skipped before the next entry. */
  body(): AsyncGenerator<Buffer>;
}

export class TarError extends Error {}

const BLOCK = 512;
const MAX_META = 1 << 20;

/** Pulls exact byte counts out of a chunked source. */
class ByteSource {
  private chunk: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    while (this.off >= this.chunk.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      this.chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      this.off = 0;
    }
    return true;
  }

  /** Exactly n bytes, or null at a clean end of input before the first byte. */
  async readExact(n: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    if (this.chunk.length - this.off >= n) {
      const out = this.chunk.subarray(this.off, this.off + n);
      this.off += n;
      return out;
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      if (!(await this.fill())) throw new TarError("archive ends in the middle of a record");
      const take = Math.min(need, this.chunk.length - this.off);
      parts.push(this.chunk.subarray(this.off, this.off + take));
      this.off += take;
      need -= take;
    }
    return Buffer.concat(parts, n);
  }

  async *chunks(n: number): AsyncGenerator<Buffer> {
    let need = n;
    while (need > 0) {
      if (!(await this.fill())) throw new TarError("archive ends in the middle of a file");
      const take = Math.min(need, this.chunk.length - this.off);
      const out = this.chunk.subarray(this.off, this.off + take);
      this.off += take;
      need -= take;
      yield out;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.chunks(n)) { /* discard */ }
  }

  /** Drains what is left (a tar may be followed by zero padding). */
  async drain(): Promise<void> {
    while (await this.fill()) this.off = this.chunk.length;
  }
}

function cstr(b: Buffer, start: number, len: number): string {
  const field = b.subarray(start, start + len);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? len : nul).toString("utf8");
}

function num(b: Buffer, start: number, len: number, what: string): number {
  const field = b.subarray(start, start + len);
  if (field[0]! & 0x80) {
    // GNU base-256: big-endian two's complement with the top bit as a marker.
    let v = BigInt(field[0]! & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(field[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarError(`header ${what} is too large`);
    return Number(v);
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`header ${what} "${text}" is not octal`);
  return Number.parseInt(text, 8);
}

function checksumOk(h: Buffer): boolean {
  const want = num(h, 148, 8, "checksum");
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return want === unsigned || want === signed;
}

/** Parses pax records "<len> key=value\n"; values stay bytes (xattr values are binary). */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break;
    const sp = data.indexOf(0x20, off);
    if (sp < 0) throw new TarError("bad pax record: no length");
    const lenText = data.subarray(off, sp).toString("latin1");
    const len = Number(lenText);
    if (!/^\d+$/.test(lenText) || len < 5 || off + len > data.length || data[off + len - 1] !== 0x0a) throw new TarError(`bad pax record length "${lenText}"`);
    const rec = data.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarError("bad pax record: no '='");
    out.set(rec.subarray(0, eq).toString("utf8"), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

const TYPES: Record<string, EntryType> = { "0": "file", "\0": "file", "7": "file", "1": "hardlink", "2": "symlink", "3": "char", "4": "block", "5": "dir", "6": "fifo" };

export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const src = new ByteSource(source[Symbol.asyncIterator]());
  let global = new Map<string, Buffer>();
  let local = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  let pending = 0;
  let pendingOf: (() => number) | undefined;
  for (;;) {
    if (pendingOf) pending = pendingOf();
    pendingOf = undefined;
    if (pending > 0) await src.skip(pending);
    pending = 0;
    const h = await src.readExact(BLOCK);
    if (h === null) {
      if (longName !== undefined || local.size > 0) throw new TarError("archive ends after an extended header");
      return;
    }
    if (h.every((c) => c === 0)) {
      await src.drain();
      return;
    }
    if (!checksumOk(h)) throw new TarError("header checksum mismatch (not a tar archive, or corrupt)");
    const flag = String.fromCharCode(h[156]!);
    const size = num(h, 124, 12, "size");
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      if (size > MAX_META) throw new TarError(`extended header of ${size} bytes exceeds ${MAX_META}`);
      const data = size > 0 ? (await src.readExact(padded))!.subarray(0, size) : Buffer.alloc(0);
      if (flag === "x") for (const [k, v] of parsePax(data)) local.set(k, v);
      else if (flag === "g") global = new Map([...global, ...parsePax(data)]);
      else if (flag === "L") longName = cstr(data, 0, data.length);
      else longLink = cstr(data, 0, data.length);
      continue;
    }
    const type = TYPES[flag];
    const pax = new Map([...global, ...local]);
    const paxStr = (k: string) => pax.get(k)?.toString("utf8");
    if (pax.has("GNU.sparse.major") || pax.has("GNU.sparse.size") || flag === "S") throw new TarError("sparse files are not supported");
    const magic = h.subarray(257, 263).toString("latin1");
    let name = cstr(h, 0, 100);
    if (magic === "ustar\0") {
      const prefix = cstr(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    name = paxStr("path") ?? longName ?? name;
    const linkname = paxStr("linkpath") ?? longLink ?? cstr(h, 157, 100);
    const paxNum = (k: string, fallback: number) => {
      const v = paxStr(k);
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new TarError(`pax ${k} "${v}" is not a number`);
      return n;
    };
    const realSize = paxNum("size", size);
    const realPadded = Math.ceil(realSize / BLOCK) * BLOCK;
    local = new Map();
    longName = undefined;
    longLink = undefined;
    if (type === undefined) {
      // Volume labels and other informational records carry nothing to unpack.
      if (flag === "V" || flag === "N" || flag === "M") {
        pending = realPadded;
        continue;
      }
      throw new TarError(`entry "${name}" has unsupported type flag '${flag}'`);
    }
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith("SCHILY.xattr.")) xattrs.set(k.slice("SCHILY.xattr.".length), v);
    const bodySize = type === "file" ? realSize : 0;
    const state = { started: false, read: 0 };
    pendingOf = () => (state.started ? bodySize - state.read + realPadded - bodySize : realPadded);
    const entry: TarEntry = {
      name,
      type,
      mode: num(h, 100, 8, "mode") & 0o7777,
      uid: paxNum("uid", num(h, 108, 8, "uid")),
      gid: paxNum("gid", num(h, 116, 8, "gid")),
      size: bodySize,
      mtime: paxNum("mtime", num(h, 136, 12, "mtime")),
      linkname,
      devmajor: num(h, 329, 8, "devmajor"),
      devminor: num(h, 337, 8, "devminor"),
      xattrs,
      body: () => {
        if (state.started) throw new Error("tar entry body read twice");
        state.started = true;
        const it = src.chunks(bodySize);
        return (async function* () {
          for await (const c of it) {
            state.read += c.length;
            yield c;
          }
        })();
      },
    };
    yield entry;
  }
}
