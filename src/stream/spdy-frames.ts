// SPDY/3.1 framing (pure): the frame layouts of the SPDY/3.1 draft, the uncompressed header
// block, and an incremental frame reader. Compression lives in spdy-headers.ts, the session in spdy.ts.

export const SPDY_VERSION = 3;

export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. */
export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
  FRAME_TOO_LARGE: 11,
} as const;

/** GOAWAY status codes. */
export const GoawayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
export const DEFAULT_WINDOW = 65_536;
/** The 24-bit length field's limit. */
export const MAX_FRAME_PAYLOAD = 0xff_ffff;

export type Frame =
  | { type: "data"; streamId: number; flags: number; data: Buffer }
  | { type: "syn_stream"; streamId: number; associatedId: number; priority: number; flags: number; headerBlock: Buffer }
  | { type: "syn_reply"; streamId: number; flags: number; headerBlock: Buffer }
  | { type: "rst_stream"; streamId: number; status: number }
  | { type: "settings"; flags: number; entries: Array<{ flags: number; id: number; value: number }> }
  | { type: "ping"; id: number }
  | { type: "goaway"; lastGoodStreamId: number; status: number }
  | { type: "headers"; streamId: number; flags: number; headerBlock: Buffer }
  | { type: "window_update"; streamId: number; delta: number }
  | { type: "unknown"; frameType: number; flags: number; payload: Buffer };

export class SpdyProtocolError extends Error {
  constructor(message: string, readonly streamId = 0, readonly status: number = RstStatus.PROTOCOL_ERROR) {
    super(message);
  }
}

const U31 = 0x7fff_ffff;

function control(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new Error(`SPDY frame payload of ${payload.length} bytes exceeds 24 bits`);
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24 | payload.length) >>> 0, 4);
  return Buffer.concat([head, payload]);
}

export function encodeData(streamId: number, flags: number, data: Buffer): Buffer {
  if (data.length > MAX_FRAME_PAYLOAD) throw new Error(`SPDY data frame of ${data.length} bytes exceeds 24 bits`);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(streamId & U31, 0);
  head.writeUInt32BE(((flags & 0xff) << 24 | data.length) >>> 0, 4);
  return Buffer.concat([head, data]);
}

export function encodeSynStream(streamId: number, associatedId: number, priority: number, flags: number, headerBlock: Buffer): Buffer {
  const p = Buffer.alloc(10);
  p.writeUInt32BE(streamId & U31, 0);
  p.writeUInt32BE(associatedId & U31, 4);
  p.writeUInt8((priority & 0x7) << 5, 8);
  return control(FrameType.SYN_STREAM, flags, Buffer.concat([p, headerBlock]));
}

export function encodeSynReply(streamId: number, flags: number, headerBlock: Buffer): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(streamId & U31, 0);
  return control(FrameType.SYN_REPLY, flags, Buffer.concat([p, headerBlock]));
}

export function encodeRstStream(streamId: number, status: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(streamId & U31, 0);
  p.writeUInt32BE(status, 4);
  return control(FrameType.RST_STREAM, 0, p);
}

export function encodeSettings(entries: Array<{ flags?: number; id: number; value: number }>): Buffer {
  const p = Buffer.alloc(4 + entries.length * 8);
  p.writeUInt32BE(entries.length, 0);
  entries.forEach((e, i) => {
    p.writeUInt32BE((((e.flags ?? 0) & 0xff) << 24 | (e.id & 0xff_ffff)) >>> 0, 4 + i * 8);
    p.writeUInt32BE(e.value >>> 0, 8 + i * 8);
  });
  return control(FrameType.SETTINGS, 0, p);
}

export function encodePing(id: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(id >>> 0, 0);
  return control(FrameType.PING, 0, p);
}

export function encodeGoaway(lastGoodStreamId: number, status: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastGoodStreamId & U31, 0);
  p.writeUInt32BE(status, 4);
  return control(FrameType.GOAWAY, 0, p);
}

export function encodeWindowUpdate(streamId: number, delta: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(streamId & U31, 0);
  p.writeUInt32BE(delta & U31, 4);
  return control(FrameType.WINDOW_UPDATE, 0, p);
}

function decodeControl(type: number, flags: number, p: Buffer): Frame {
  const need = (n: number, what: string) => {
    if (p.length < n) throw new SpdyProtocolError(`${what} frame of ${p.length} bytes is shorter than ${n}`);
  };
  switch (type) {
    case FrameType.SYN_STREAM:
      need(10, "SYN_STREAM");
      return {
        type: "syn_stream", flags,
        streamId: p.readUInt32BE(0) & U31,
        associatedId: p.readUInt32BE(4) & U31,
        priority: p.readUInt8(8) >> 5,
        headerBlock: p.subarray(10),
      };
    case FrameType.SYN_REPLY:
      need(4, "SYN_REPLY");
      return { type: "syn_reply", flags, streamId: p.readUInt32BE(0) & U31, headerBlock: p.subarray(4) };
    case FrameType.HEADERS:
      need(4, "HEADERS");
      return { type: "headers", flags, streamId: p.readUInt32BE(0) & U31, headerBlock: p.subarray(4) };
    case FrameType.RST_STREAM:
      need(8, "RST_STREAM");
      return { type: "rst_stream", streamId: p.readUInt32BE(0) & U31, status: p.readUInt32BE(4) };
    case FrameType.SETTINGS: {
      need(4, "SETTINGS");
      const n = p.readUInt32BE(0);
      if (p.length !== 4 + n * 8) throw new SpdyProtocolError(`SETTINGS frame announces ${n} entries in ${p.length} bytes`);
      const entries = [];
      for (let i = 0; i < n; i++) {
        const w = p.readUInt32BE(4 + i * 8);
        entries.push({ flags: w >>> 24, id: w & 0xff_ffff, value: p.readUInt32BE(8 + i * 8) });
      }
      return { type: "settings", flags, entries };
    }
    case FrameType.PING:
      if (p.length !== 4) throw new SpdyProtocolError(`PING frame of ${p.length} bytes (must be 4)`);
      return { type: "ping", id: p.readUInt32BE(0) };
    case FrameType.GOAWAY:
      need(4, "GOAWAY");
      return { type: "goaway", lastGoodStreamId: p.readUInt32BE(0) & U31, status: p.length >= 8 ? p.readUInt32BE(4) : 0 };
    case FrameType.WINDOW_UPDATE:
      if (p.length !== 8) throw new SpdyProtocolError(`WINDOW_UPDATE frame of ${p.length} bytes (must be 8)`);
      return { type: "window_update", streamId: p.readUInt32BE(0) & U31, delta: p.readUInt32BE(4) & U31 };
    default:
      return { type: "unknown", frameType: type, flags, payload: p };
  }
}

/** Splits a byte stream into frames; refuses frames larger than `maxPayload`. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(private readonly maxPayload = MAX_FRAME_PAYLOAD) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The next complete frame, or undefined until more bytes arrive. */
  next(): Frame | undefined {
    if (this.length < 8) return undefined;
    const head = this.peek(8);
    const len = head.readUInt32BE(4) & 0xff_ffff;
    const flags = head.readUInt8(4);
    if (len > this.maxPayload) throw new SpdyProtocolError(`frame of ${len} bytes exceeds the ${this.maxPayload}-byte limit`, 0, RstStatus.FRAME_TOO_LARGE);
    if (this.length < 8 + len) return undefined;
    const all = this.take(8 + len);
    const payload = all.subarray(8);
    if (head[0]! & 0x80) {
      const version = head.readUInt16BE(0) & 0x7fff;
      if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY version ${version} is not supported (only 3)`, 0, RstStatus.UNSUPPORTED_VERSION);
      return decodeControl(head.readUInt16BE(2), flags, payload);
    }
    return { type: "data", streamId: head.readUInt32BE(0) & U31, flags, data: payload };
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    const first = this.chunks[0]!;
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.length -= n;
    return out;
  }
}

/** Header names are lowercase on the wire; a name may carry several values joined by NUL. */
export type HeaderList = Array<[string, string]>;

export function encodeHeaderBlock(headers: HeaderList): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(headers.length);
  parts.push(count);
  for (const [name, value] of headers) {
    for (const s of [name.toLowerCase(), value]) {
      const b = Buffer.from(s, "utf8");
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

/** Decodes an uncompressed header block into lowercase name -> value (NUL-joined values kept as is). */
export function decodeHeaderBlock(block: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  const bad = (why: string) => new SpdyProtocolError(`malformed header block: ${why}`);
  if (block.length < 4) throw bad("shorter than 4 bytes");
  const n = block.readUInt32BE(0);
  let off = 4;
  const str = (): string => {
    if (off + 4 > block.length) throw bad("truncated length");
    const len = block.readUInt32BE(off);
    off += 4;
    if (off + len > block.length) throw bad("truncated string");
    const s = block.toString("utf8", off, off + len);
    off += len;
    return s;
  };
  for (let i = 0; i < n; i++) {
    const name = str();
    const value = str();
    if (name === "") throw bad("empty header name");
    if (name !== name.toLowerCase()) throw bad(`header name "${name}" is not lowercase`);
    if (out.has(name)) throw bad(`header "${name}" appears twice`);
    out.set(name, value);
  }
  if (off !== block.length) throw bad(`${block.length - off} trailing bytes`);
  return out;
}
