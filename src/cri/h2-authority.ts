// gRPC-Go clients older than v1.51 (crictl and critest v1.26, kubelets before 1.26) send the unix
// socket's path as the HTTP/2 :authority. Node's HTTP/2 parser rejects that value ("/" is not
// an authority character) with PROTOCOL_ERROR before any server code sees the call; berth's own
// gRPC server (src/grpc/server.ts) sits on that same parser, so this stays (checked on Node 20:
// a bare http2 server resets a request whose :authority is a socket path). berth accepts each
// connection itself and reads up to the first request; when it carries such an authority, the
// client's header blocks are rewritten on the way in: the bad value becomes a valid one of the
// same length, so the HPACK dynamic tables of client and server keep the same sizes and stay in
// step. Every other client gets the socket itself, which node's HTTP/2 session reads natively
// (a JS stream in between costs every call about 60 us of CPU).
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from "./hpack-huffman.js";

const PREFACE_LENGTH = 24;
const FRAME_HEADER = 9;
const TYPE_HEADERS = 0x1;
const TYPE_PRIORITY = 0x2;
const TYPE_SETTINGS = 0x4;
const TYPE_WINDOW_UPDATE = 0x8;
const TYPE_CONTINUATION = 0x9;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const MAX_FRAME = 16384;
const AUTHORITY_STATIC_INDEX = 1;
/** unreserved, sub-delims, ":", "@", "[", "]", "%": what nghttp2 accepts in :authority. */
const AUTHORITY_OK = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]*$/;

let huffmanTree: Map<number, number>[] | undefined;
/** (bit length) -> (code -> byte) */
function huffmanLookup(): Map<number, number>[] {
  if (!huffmanTree) {
    huffmanTree = [];
    for (let sym = 0; sym < 256; sym++) {
      const len = HUFFMAN_LENGTHS[sym]!;
      (huffmanTree[len] ??= new Map()).set(HUFFMAN_CODES[sym]!, sym);
    }
  }
  return huffmanTree;
}

export function huffmanDecode(data: Uint8Array): Buffer {
  const table = huffmanLookup();
  const out: number[] = [];
  let code = 0;
  let len = 0;
  for (const byte of data) {
    for (let bit = 7; bit >= 0; bit--) {
      code = ((code << 1) | ((byte >> bit) & 1)) >>> 0;
      len++;
      const sym = table[len]?.get(code);
      if (sym !== undefined) {
        out.push(sym);
        code = 0;
        len = 0;
      } else if (len > 30) {
        throw new Error("invalid HPACK Huffman data");
      }
    }
  }
  // What is left must be fewer than 8 bits of the EOS prefix (all ones).
  if (len >= 8 || code !== (1 << len) - 1) throw new Error("invalid HPACK Huffman padding");
  return Buffer.from(out);
}

function readInt(buf: Buffer, pos: number, prefixBits: number): [value: number, next: number] {
  const max = (1 << prefixBits) - 1;
  let value = buf[pos]! & max;
  pos++;
  if (value < max) return [value, pos];
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated HPACK integer");
    const b = buf[pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, pos];
    if (shift > 28) throw new Error("HPACK integer too large");
  }
}

function writeInt(firstByteBits: number, prefixBits: number, value: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteBits | value]);
  const bytes = [firstByteBits | max];
  value -= max;
  while (value >= 0x80) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

function readString(buf: Buffer, pos: number): [value: Buffer, next: number, raw: Buffer] {
  const start = pos;
  const huffman = (buf[pos]! & 0x80) !== 0;
  const [len, p] = readInt(buf, pos, 7);
  if (p + len > buf.length) throw new Error("truncated HPACK string");
  const bytes = buf.subarray(p, p + len);
  return [huffman ? huffmanDecode(bytes) : Buffer.from(bytes), p + len, buf.subarray(start, p + len)];
}

/** A valid authority of exactly `length` bytes. */
function replacement(length: number): string {
  return ("localhost" + "-".repeat(Math.max(0, length - 9))).slice(0, length);
}

export interface BlockScan {
  /** The first :authority value found, if any. */
  authority?: string;
  /** The block with every invalid :authority value replaced (same decoded length). */
  block: Buffer;
}

/** Walks an HPACK header block, finding (and, when invalid, replacing) :authority values. */
export function scanHeaderBlock(block: Buffer): BlockScan {
  const parts: Buffer[] = [];
  let authority: string | undefined;
  let pos = 0;
  while (pos < block.length) {
    const start = pos;
    const b = block[pos]!;
    if (b & 0x80) {
      [, pos] = readInt(block, pos, 7);
      parts.push(block.subarray(start, pos));
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      [, pos] = readInt(block, pos, 5);
      parts.push(block.subarray(start, pos));
      continue;
    }
    const prefixBits = b & 0x40 ? 6 : 4;
    let nameIndex: number;
    [nameIndex, pos] = readInt(block, pos, prefixBits);
    let isAuthority = nameIndex === AUTHORITY_STATIC_INDEX;
    if (nameIndex === 0) {
      let name: Buffer;
      [name, pos] = readString(block, pos);
      isAuthority = name.toString("latin1") === ":authority";
    }
    const beforeValue = pos;
    let value: Buffer;
    [value, pos] = readString(block, pos);
    const text = value.toString("latin1");
    if (!isAuthority) {
      parts.push(block.subarray(start, pos));
      continue;
    }
    authority ??= text;
    if (AUTHORITY_OK.test(text)) {
      parts.push(block.subarray(start, pos));
      continue;
    }
    parts.push(block.subarray(start, beforeValue), writeInt(0, 7, value.length), Buffer.from(replacement(value.length), "latin1"));
  }
  return { authority, block: Buffer.concat(parts) };
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(FRAME_HEADER);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/**
 * Parses the client's half of an HTTP/2 connection frame by frame, handing each header
 * block to `onBlock` and passing every other frame through untouched.
 */
export class ClientFrameReader {
  private buffered: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private pending?: { streamId: number; flags: number; priority: Buffer; fragments: Buffer[] };
  /** Header blocks handed to onBlock so far. */
  blocks = 0;
  /** Before the first header block, a frame other than SETTINGS, WINDOW_UPDATE, HEADERS, CONTINUATION or PRIORITY came (a PING). */
  otherFrame = false;

  /** `dropAck`: the client's first SETTINGS ACK answers berth's own SETTINGS (see acceptConnection) and is removed. */
  constructor(private readonly onBlock: (block: Buffer) => Buffer, public dropAck = false) {}

  /** A header block is still incomplete (its CONTINUATION frames have not all come). */
  get midBlock(): boolean {
    return this.pending !== undefined;
  }

  /** Consumes bytes; returns the bytes to forward (possibly rewritten). */
  push(chunk: Buffer): Buffer {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const out: Buffer[] = [];
    if (!this.prefaceSeen) {
      if (this.buffered.length < PREFACE_LENGTH) return Buffer.alloc(0);
      out.push(this.buffered.subarray(0, PREFACE_LENGTH));
      this.buffered = this.buffered.subarray(PREFACE_LENGTH);
      this.prefaceSeen = true;
    }
    while (this.buffered.length >= FRAME_HEADER) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < FRAME_HEADER + length) break;
      const raw = this.buffered.subarray(0, FRAME_HEADER + length);
      this.buffered = this.buffered.subarray(FRAME_HEADER + length);
      const type = raw[3]!;
      const flags = raw[4]!;
      const streamId = raw.readUInt32BE(5) & 0x7fffffff;
      let payload = raw.subarray(FRAME_HEADER);
      if (type === TYPE_SETTINGS && flags & FLAG_ACK && this.dropAck) {
        this.dropAck = false;
        continue;
      }
      if (this.blocks === 0 && type !== TYPE_SETTINGS && type !== TYPE_HEADERS && type !== TYPE_CONTINUATION && type !== TYPE_WINDOW_UPDATE && type !== TYPE_PRIORITY) this.otherFrame = true;
      if (type === TYPE_HEADERS) {
        let padding = 0;
        if (flags & FLAG_PADDED) {
          padding = payload[0]!;
          payload = payload.subarray(1);
        }
        const priority = flags & FLAG_PRIORITY ? payload.subarray(0, 5) : Buffer.alloc(0);
        const fragment = payload.subarray(priority.length, payload.length - padding);
        this.pending = { streamId, flags, priority, fragments: [fragment] };
      } else if (type === TYPE_CONTINUATION && this.pending) {
        this.pending.fragments.push(payload);
      } else {
        out.push(raw);
        continue;
      }
      if (flags & FLAG_END_HEADERS) out.push(this.emitHeaders());
    }
    return Buffer.concat(out);
  }

  /** The bytes held back (a partial frame), handing them out once the reader is retired. */
  drain(): Buffer {
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }

  private emitHeaders(): Buffer {
    const p = this.pending!;
    this.pending = undefined;
    this.blocks++;
    const block = this.onBlock(Buffer.concat(p.fragments));
    const baseFlags = (p.flags & ~(FLAG_PADDED | FLAG_END_HEADERS)) & 0xff;
    const first = Buffer.concat([p.priority, block]);
    if (first.length <= MAX_FRAME) return frame(TYPE_HEADERS, baseFlags | FLAG_END_HEADERS, p.streamId, first);
    const frames = [frame(TYPE_HEADERS, baseFlags, p.streamId, first.subarray(0, MAX_FRAME))];
    for (let off = MAX_FRAME; off < first.length; off += MAX_FRAME) {
      const last = off + MAX_FRAME >= first.length;
      frames.push(frame(TYPE_CONTINUATION, last ? FLAG_END_HEADERS : 0, p.streamId, first.subarray(off, off + MAX_FRAME)));
    }
    return Buffer.concat(frames);
  }
}

/**
 * The connection as the gRPC server sees it for a client whose :authority needs rewriting: server bytes
 * go straight to the socket; client bytes pass through the frame reader.
 */
class ClientConnection extends Duplex {
  constructor(private readonly socket: Socket, reader: ClientFrameReader, first: Buffer) {
    super();
    if (first.length) this.push(first);
    socket.on("data", (chunk: Buffer) => {
      let out: Buffer;
      try {
        out = reader.push(chunk);
      } catch (err) {
        this.destroy(err as Error);
        return;
      }
      if (out.length && !this.push(out)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
    socket.resume();
  }
  override _read(): void {
    this.socket.resume();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

/** An empty SETTINGS frame: a server preface that changes no setting. */
const EMPTY_SETTINGS = frame(TYPE_SETTINGS, 0, 0, Buffer.alloc(0));
/** Client bytes held while waiting for the first request: more than a preface, settings and one header block need. */
const MAX_HELD = 1 << 20;

/**
 * Reads a freshly accepted CRI connection up to its first request and hands the gRPC server (`serve`)
 * the socket itself, or the rewriting ClientConnection when that request's :authority is one
 * nghttp2 refuses. gRPC-Go clients send no request before the server's SETTINGS, and the server's
 * HTTP/2 session (which would send them) does not exist yet: berth sends an empty SETTINGS frame
 * itself and removes the client's ACK of it, which that session never asked for. A client
 * that sends anything else first (a PING) is served through ClientConnection, which keeps
 * looking for that ACK.
 */
export function acceptConnection(socket: Socket, serve: (conn: Duplex) => void): void {
  let authority: string | undefined;
  const reader = new ClientFrameReader((block) => {
    const scan = scanHeaderBlock(block);
    if (reader.blocks === 1) authority = scan.authority;
    return scan.block;
  }, true);
  const held: Buffer[] = [];
  let heldBytes = 0;
  const stopReading = () => {
    socket.off("data", onData);
    socket.off("error", onGone);
    socket.off("close", onGone);
    socket.pause();
  };
  const onGone = () => {
    stopReading();
    socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    let out: Buffer;
    try {
      out = reader.push(chunk);
    } catch {
      onGone();
      return;
    }
    if (out.length) held.push(out);
    heldBytes += chunk.length;
    const haveRequest = reader.blocks > 0;
    if (!reader.otherFrame && !(haveRequest && !reader.dropAck && !reader.midBlock)) {
      if (heldBytes > MAX_HELD) onGone();
      return;
    }
    stopReading();
    if (!reader.otherFrame && (authority === undefined || AUTHORITY_OK.test(authority))) {
      socket.unshift(Buffer.concat([...held, reader.drain()]));
      serve(socket);
    } else {
      serve(new ClientConnection(socket, reader, Buffer.concat(held)));
    }
  };
  socket.on("data", onData);
  socket.on("error", onGone);
  socket.on("close", onGone);
  socket.write(EMPTY_SETTINGS);
}
