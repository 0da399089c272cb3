// HPACK (RFC 7541) for berth's HTTP/2 server (h2.ts): a decoder for the clients' request
// header blocks, with the dynamic table they index into and Huffman-coded strings, and the few
// literal forms berth's own header blocks use (never indexed, never Huffman-coded: the server's
// blocks are built once and reused, so it keeps no dynamic table of its own).
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from "./hpack-huffman.js";

/** The static table (RFC 7541 Appendix A), from index 1. */
const STATIC: readonly (readonly [string, string])[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""], ["etag", ""],
  ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""],
  ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""],
  ["referer", ""], ["refresh", ""], ["retry-after", ""], ["server", ""], ["set-cookie", ""],
  ["strict-transport-security", ""], ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];

/** Static-table indexes berth's encoder names. */
export const STATIC_STATUS = 8;
export const STATIC_CONTENT_TYPE = 31;

/** The table size both sides start with (SETTINGS_HEADER_TABLE_SIZE's default, which berth keeps). */
export const DEFAULT_TABLE_SIZE = 4096;

export class HpackError extends Error {}

// The Huffman code as a binary tree: child (node * 2 + bit) is > 0 for an inner node, -(byte + 1)
// for a leaf, 0 where no code goes (the EOS code's path, which a decoder must refuse).
let tree: Int32Array | undefined;
function huffmanTree(): Int32Array {
  if (tree) return tree;
  const t = new Int32Array(2 * 512);
  let next = 1;
  for (let sym = 0; sym < 256; sym++) {
    const code = HUFFMAN_CODES[sym]!;
    const len = HUFFMAN_LENGTHS[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const slot = node * 2 + ((code >>> i) & 1);
      if (i === 0) t[slot] = -(sym + 1);
      else node = t[slot] ||= next++;
    }
  }
  return (tree = t);
}

/** Decodes a Huffman-coded string (latin1: header bytes as they are). */
export function huffmanDecode(data: Uint8Array): string {
  const t = huffmanTree();
  // The shortest code is 5 bits.
  const out = Buffer.allocUnsafe(Math.ceil((data.length * 8) / 5));
  let n = 0;
  let node = 0;
  let run = 0;
  let ones = true;
  for (let i = 0; i < data.length; i++) {
    const byte = data[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      const v = t[node * 2 + b]!;
      if (v < 0) {
        out[n++] = -v - 1;
        node = 0;
        run = 0;
        ones = true;
      } else if (v === 0) {
        throw new HpackError("invalid Huffman code (EOS)");
      } else {
        node = v;
        run++;
        if (b === 0) ones = false;
      }
    }
  }
  // What is left may only be padding: fewer than 8 bits of the EOS code's start (all ones).
  if (run >= 8 || !ones) throw new HpackError("invalid Huffman padding");
  return out.toString("latin1", 0, n);
}

/** Largest header list (names + values + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts) a request may carry. */
export const MAX_HEADER_LIST = 64 * 1024;

/** Decodes a connection's request header blocks, in order, keeping its dynamic table. */
export class HpackDecoder {
  private readonly entries: [string, string][] = [];
  private size = 0;
  private maxSize = DEFAULT_TABLE_SIZE;
  private pos = 0;
  private block: Buffer = Buffer.alloc(0);

  /** The block's fields by name (repeated names joined with ", "). Throws HpackError on a malformed block. */
  decode(block: Buffer): Record<string, string> {
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    this.block = block;
    this.pos = 0;
    let listSize = 0;
    let fields = 0;
    while (this.pos < block.length) {
      const b = block[this.pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        [name, value] = this.entry(this.int(7));
      } else if (b & 0x40) {
        const index = this.int(6);
        name = index ? this.entry(index)[0] : this.str();
        value = this.str();
        this.insert(name, value);
      } else if (b & 0x20) {
        const size = this.int(5);
        if (fields > 0) throw new HpackError("a table size update after a header field");
        if (size > DEFAULT_TABLE_SIZE) throw new HpackError(`table size ${size} is over the ${DEFAULT_TABLE_SIZE} allowed`);
        this.maxSize = size;
        this.evict();
        continue;
      } else {
        const index = this.int(4);
        name = index ? this.entry(index)[0] : this.str();
        value = this.str();
      }
      fields++;
      listSize += name.length + value.length + 32;
      if (listSize > MAX_HEADER_LIST) throw new HpackError(`the header list is larger than ${MAX_HEADER_LIST} bytes`);
      const had = out[name];
      out[name] = had === undefined ? value : `${had}, ${value}`;
    }
    this.block = Buffer.alloc(0);
    return out;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("index 0");
    if (index <= STATIC.length) return STATIC[index - 1]!;
    const e = this.entries[index - STATIC.length - 1];
    if (!e) throw new HpackError(`index ${index} is past the table`);
    return e;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + 32;
    if (size > this.maxSize) {
      // An entry larger than the table empties it and is not added (RFC 7541 4.4).
      this.entries.length = 0;
      this.size = 0;
      return;
    }
    this.entries.unshift([name, value]);
    this.size += size;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxSize) {
      const [n, v] = this.entries.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }

  private int(prefixBits: number): number {
    const block = this.block;
    const max = (1 << prefixBits) - 1;
    let value = block[this.pos++]! & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.pos >= block.length) throw new HpackError("truncated integer");
      const b = block[this.pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) return value;
      if (shift > 28) throw new HpackError("integer too large");
    }
  }

  private str(): string {
    const block = this.block;
    if (this.pos >= block.length) throw new HpackError("truncated string");
    const huffman = (block[this.pos]! & 0x80) !== 0;
    const len = this.int(7);
    const end = this.pos + len;
    if (end > block.length) throw new HpackError("truncated string");
    const s = huffman ? huffmanDecode(block.subarray(this.pos, end)) : block.toString("latin1", this.pos, end);
    this.pos = end;
    return s;
  }
}

function intBytes(firstByteBits: number, prefixBits: number, value: number, out: number[]): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByteBits | value);
    return;
  }
  out.push(firstByteBits | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/** A header field as a literal never added to a table, its name from the static table (`nameIndex`) or spelled out. */
export function literal(name: string | number, value: string): Buffer {
  const head: number[] = [];
  if (typeof name === "number") {
    intBytes(0x00, 4, name, head);
  } else {
    head.push(0x00);
    intBytes(0x00, 7, Buffer.byteLength(name, "latin1"), head);
  }
  const nameBytes = typeof name === "number" ? Buffer.alloc(0) : Buffer.from(name, "latin1");
  const valueBytes = Buffer.from(value, "latin1");
  const vlen: number[] = [];
  intBytes(0x00, 7, valueBytes.length, vlen);
  return Buffer.concat([Buffer.from(head), nameBytes, Buffer.from(vlen), valueBytes]);
}

/** A header field by its static-table index (name and value both). */
export function indexed(index: number): Buffer {
  const out: number[] = [];
  intBytes(0x80, 7, index, out);
  return Buffer.from(out);
}
