// The server side of HTTP/2 (RFC 9113) over one accepted socket, as much of it as gRPC uses: cleartext
// (h2c with prior knowledge: the CRI socket is a unix socket), requests the client opens,
// header blocks through HPACK (hpack.ts), DATA under flow control both ways, PING, SETTINGS,
// RST_STREAM and GOAWAY. No server push, no priorities (PRIORITY is read and ignored).
//
// Why berth speaks HTTP/2 itself instead of through node:http2: node sends a gRPC response's
// trailers in a later event-loop turn than its headers and message (two writes, two wake-ups of
// the client per call), builds a Duplex stream with its listeners per call, and its parser
// refuses the socket-path :authority gRPC-Go clients before 1.51 send (berth had to rewrite
// those clients' headers on the way in). Here a unary answer is one write: HEADERS, DATA and
// the trailing HEADERS go out together, in the same turn as the handler's reply. Everything
// written in one turn (control frames included) leaves in one socket write, queued with
// queueMicrotask.
import type { Socket } from "node:net";
import { HpackDecoder, HpackError } from "./hpack.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** HTTP/2 error codes (RFC 9113 section 7). */
export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

const DEFAULT_WINDOW = 65_535;
const DEFAULT_FRAME_SIZE = 16_384;
const MAX_WINDOW = 2 ** 31 - 1;
/** Frames berth accepts are at most this large (the default SETTINGS_MAX_FRAME_SIZE, which berth keeps). */
const MAX_FRAME_IN = DEFAULT_FRAME_SIZE;
/** Each request stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE): a 16 MiB request needs no more than a few window updates. */
const STREAM_WINDOW = 4 * 1024 * 1024;
/** The connection's receive window, raised from 65,535 right after the settings. */
const CONNECTION_WINDOW = 16 * 1024 * 1024;
/** Streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused. */
export const MAX_STREAMS = 1000;
/** A header block (HEADERS and its CONTINUATIONs) larger than this ends the connection. */
const MAX_HEADER_BLOCK = 256 * 1024;
/** write() says "wait for drain" once a stream holds this much unsent, or the socket this much unwritten. */
const HIGH_WATER = 64 * 1024;
/** A client that lets this much pile up unread (it sends, never reads) is disconnected. */
const MAX_BACKLOG = 64 * 1024 * 1024;
/** Largest write made by concatenating: above it, the pieces go out corked (one writev) uncopied. */
const CONCAT_MAX = 64 * 1024;

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(9);
  h[0] = length >>> 16;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}

/** One whole frame (berth's warm-up client and the tests write frames themselves). */
export function encodeFrame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([frameHeader(payload.length, type, flags, streamId), payload]);
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

const SERVER_PREFACE = Buffer.concat([
  frameHeader(18, SETTINGS, 0, 0),
  Buffer.from([0, SETTINGS_MAX_CONCURRENT_STREAMS]), u32(MAX_STREAMS),
  Buffer.from([0, SETTINGS_INITIAL_WINDOW_SIZE]), u32(STREAM_WINDOW),
  Buffer.from([0, SETTINGS_ENABLE_PUSH]), u32(0),
  frameHeader(4, WINDOW_UPDATE, 0, 0), u32(CONNECTION_WINDOW - DEFAULT_WINDOW),
]);
const SETTINGS_ACK = frameHeader(0, SETTINGS, FLAG_ACK, 0);

/** What a stream tells the one it belongs to (a gRPC call). */
export interface StreamSink {
  /** Request bytes, as they come. */
  take(chunk: Buffer): void;
  /** The client has sent everything (END_STREAM). */
  ended(): void;
  /** The stream is over: both sides done, reset by either side, or the connection gone. Once. */
  closed(): void;
}

/** Who is told of new requests. */
export interface RequestHandler {
  /** A request's headers came: set `stream.sink`, or answer it at once. */
  stream(stream: H2Stream, headers: Record<string, string>): void;
}

interface Queued {
  data: Buffer;
  cb: (() => void) | undefined;
}

/** One request/response stream. */
export class H2Stream {
  sink: StreamSink | undefined;
  /** The client sent END_STREAM. */
  remoteDone = false;
  /** berth sent (or queued, behind flow control) its END_STREAM. */
  localDone = false;
  closed = false;
  /** Response bytes the peer's window has no room for yet, in order. */
  queue: Queued[] = [];
  queuedBytes = 0;
  /** The trailing header block, held until the queue is sent. */
  trailers: Buffer | undefined;
  /** Request bytes taken since the last WINDOW_UPDATE for this stream. */
  unacked = 0;
  private drainFns: (() => void)[] | undefined;

  constructor(readonly id: number, private readonly conn: H2Connection, public sendWindow: number) {}

  /** It came on a connection berthd opened to itself (warmup.ts). */
  get internal(): boolean {
    return this.conn.internal;
  }

  /** No more may be sent on it (it is closed, or its END_STREAM is out). */
  get destroyed(): boolean {
    return this.closed || this.localDone;
  }

  /** Sends a header block; `end`: it ends the stream (a trailers-only response). */
  respond(block: Buffer, end: boolean): void {
    if (this.destroyed) return;
    this.conn.sendHeaders(this, block, end);
    if (end) this.conn.localEnd(this);
  }

  /** Sends `data` as DATA frames (as the windows allow); `cb` once all of it has gone to the socket. false: wait for "drain". */
  write(data: Buffer, cb?: () => void): boolean {
    if (this.destroyed) {
      if (cb) process.nextTick(cb);
      return true;
    }
    this.conn.sendData(this, data, cb);
    const ok = this.queuedBytes < HIGH_WATER && !this.conn.backedUp;
    if (!ok) this.conn.waitDrain(this);
    return ok;
  }

  /** Sends the trailing header block (ending the stream) after what is queued. */
  end(block: Buffer): void {
    if (this.destroyed) return;
    this.localDone = true;
    if (this.queue.length === 0) {
      this.conn.sendHeaders(this, block, true);
      this.conn.localEnd(this);
    } else {
      this.trailers = block;
    }
  }

  onDrain(fn: () => void): void {
    (this.drainFns ??= []).push(fn);
  }

  offDrain(fn: () => void): void {
    const i = this.drainFns?.indexOf(fn) ?? -1;
    if (i >= 0) this.drainFns!.splice(i, 1);
  }

  /** @internal */
  drained(): void {
    const fns = this.drainFns;
    this.drainFns = undefined;
    if (fns) for (const fn of fns) fn();
  }
}

/** One client connection. */
export class H2Connection {
  private readonly streams = new Map<number, H2Stream>();
  /** Streams with response bytes waiting for window, in the order they blocked. */
  private readonly blocked = new Set<H2Stream>();
  /** Streams whose write() said false: they are owed a "drain". */
  private readonly drainWaiters = new Set<H2Stream>();
  private readonly decoder = new HpackDecoder();
  private rest: Buffer | undefined;
  private prefaceSeen = false;
  /** The header block being gathered from HEADERS and CONTINUATION frames. */
  private pending: { id: number; flags: number; parts: Buffer[]; bytes: number } | undefined;
  private lastStreamId = 0;
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_FRAME_SIZE;
  private connUnacked = 0;
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushQueued = false;
  private written: (() => void)[] = [];
  private goingAway = false;
  private dead = false;
  private over = false;
  private readonly flushFn = () => this.flush();

  /** `internal`: berthd's own connection (the start-up warm-up's). */
  constructor(private readonly socket: Socket, private readonly handler: RequestHandler, private readonly onClose: (c: H2Connection) => void, readonly internal = false) {
    socket.setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.input(chunk));
    socket.on("drain", () => this.checkDrain());
    socket.on("error", () => socket.destroy());
    socket.on("close", () => this.gone());
    this.push(SERVER_PREFACE);
  }

  /** @internal the socket holds more than HIGH_WATER unwritten */
  get backedUp(): boolean {
    return this.socket.writableLength >= HIGH_WATER;
  }

  /** @internal */
  waitDrain(s: H2Stream): void {
    this.drainWaiters.add(s);
  }

  /** Tells the streams owed a "drain" that have room again. */
  private checkDrain(): void {
    if (this.drainWaiters.size === 0 || this.backedUp) return;
    for (const s of this.drainWaiters) {
      if (s.queuedBytes >= HIGH_WATER) continue;
      this.drainWaiters.delete(s);
      s.drained();
    }
  }

  /** GOAWAY: no new streams; the connection ends once the open ones have. */
  goAway(): void {
    if (this.goingAway || this.dead) return;
    this.goingAway = true;
    this.push(frameHeader(8, GOAWAY, 0, 0), u32(this.lastStreamId), u32(H2_ERROR.NO_ERROR));
    if (this.streams.size === 0) this.endSoon();
  }

  /** Drops the connection: open streams are closed (their calls cancelled). */
  destroy(): void {
    this.socket.destroy();
    this.gone();
  }

  // ---- input -------------------------------------------------------------------------------

  private input(chunk: Buffer): void {
    if (this.dead) return;
    let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = undefined;
    let pos = 0;
    if (!this.prefaceSeen) {
      if (buf.length < PREFACE.length) {
        if (!PREFACE.subarray(0, buf.length).equals(buf)) return this.fail(H2_ERROR.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
        this.rest = buf;
        return;
      }
      if (!buf.subarray(0, PREFACE.length).equals(PREFACE)) return this.fail(H2_ERROR.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
      pos = PREFACE.length;
      this.prefaceSeen = true;
    }
    while (buf.length - pos >= 9) {
      const length = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
      if (length > MAX_FRAME_IN) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, `a frame of ${length} bytes (at most ${MAX_FRAME_IN})`);
      if (buf.length - pos < 9 + length) break;
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const payload = buf.subarray(pos + 9, pos + 9 + length);
      pos += 9 + length;
      this.frame(type, flags, id, payload);
      if (this.dead) return;
    }
    if (pos < buf.length) this.rest = pos === 0 ? buf : Buffer.from(buf.subarray(pos));
  }

  private frame(type: number, flags: number, id: number, p: Buffer): void {
    if (this.pending && type !== CONTINUATION) return this.fail(H2_ERROR.PROTOCOL_ERROR, "a header block was cut by another frame");
    switch (type) {
      case DATA: return this.onData(flags, id, p);
      case HEADERS: return this.onHeaders(flags, id, p);
      case PRIORITY:
        if (id === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "PRIORITY on stream 0");
        return;
      case RST_STREAM: {
        if (id === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "RST_STREAM on stream 0");
        if (p.length !== 4) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, "RST_STREAM is 4 bytes");
        if (id > this.lastStreamId) return this.fail(H2_ERROR.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
        const s = this.streams.get(id);
        if (s) this.close(s);
        return;
      }
      case SETTINGS: return this.onSettings(flags, id, p);
      case PUSH_PROMISE: return this.fail(H2_ERROR.PROTOCOL_ERROR, "clients do not push");
      case PING:
        if (id !== 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "PING on a stream");
        if (p.length !== 8) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, "PING is 8 bytes");
        if (!(flags & FLAG_ACK)) this.push(frameHeader(8, PING, FLAG_ACK, 0), Buffer.from(p));
        return;
      case GOAWAY:
        // The client will open no more streams; it closes the socket when it is done.
        return;
      case WINDOW_UPDATE: return this.onWindowUpdate(id, p);
      case CONTINUATION: return this.onContinuation(flags, id, p);
      default:
        // Unknown frame types are ignored (RFC 9113 section 4.1).
        return;
    }
  }

  private onData(flags: number, id: number, p: Buffer): void {
    if (id === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "DATA on stream 0");
    // The whole payload, padding included, counts against the windows.
    this.connUnacked += p.length;
    if (this.connUnacked >= CONNECTION_WINDOW / 2) {
      this.push(frameHeader(4, WINDOW_UPDATE, 0, 0), u32(this.connUnacked));
      this.connUnacked = 0;
    }
    const s = this.streams.get(id);
    if (!s) {
      if (id > this.lastStreamId) return this.fail(H2_ERROR.PROTOCOL_ERROR, "DATA on an idle stream");
      // A stream berth already closed (answered, or reset): what the client still sends is dropped.
      return;
    }
    if (s.remoteDone) return this.resetStream(s, H2_ERROR.STREAM_CLOSED);
    let data = p;
    if (flags & FLAG_PADDED) {
      const pad = p.length > 0 ? p[0]! : 0;
      if (p.length === 0 || pad >= p.length) return this.fail(H2_ERROR.PROTOCOL_ERROR, "DATA padding longer than the frame");
      data = p.subarray(1, p.length - pad);
    }
    s.unacked += p.length;
    if (s.unacked > STREAM_WINDOW) return this.resetStream(s, H2_ERROR.FLOW_CONTROL_ERROR);
    if (data.length) s.sink?.take(data);
    if (s.closed) return;
    if (flags & FLAG_END_STREAM) {
      this.remoteEnd(s);
    } else if (s.unacked >= STREAM_WINDOW / 2) {
      this.push(frameHeader(4, WINDOW_UPDATE, 0, id), u32(s.unacked));
      s.unacked = 0;
    }
  }

  private onHeaders(flags: number, id: number, p: Buffer): void {
    if (id === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = p;
    let pad = 0;
    if (flags & FLAG_PADDED) {
      if (block.length === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "HEADERS padding longer than the frame");
      pad = block[0]!;
      block = block.subarray(1);
    }
    if (flags & FLAG_PRIORITY) {
      if (block.length < 5) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      block = block.subarray(5);
    }
    if (pad > block.length) return this.fail(H2_ERROR.PROTOCOL_ERROR, "HEADERS padding longer than the frame");
    block = block.subarray(0, block.length - pad);
    if (flags & FLAG_END_HEADERS) return this.headerBlock(id, flags, block);
    this.pending = { id, flags, parts: [block], bytes: block.length };
  }

  private onContinuation(flags: number, id: number, p: Buffer): void {
    const pending = this.pending;
    if (!pending || pending.id !== id) return this.fail(H2_ERROR.PROTOCOL_ERROR, "CONTINUATION without its HEADERS");
    pending.parts.push(p);
    pending.bytes += p.length;
    if (pending.bytes > MAX_HEADER_BLOCK) return this.fail(H2_ERROR.ENHANCE_YOUR_CALM, `a header block of more than ${MAX_HEADER_BLOCK} bytes`);
    if (!(flags & FLAG_END_HEADERS)) return;
    this.pending = undefined;
    this.headerBlock(id, pending.flags, Buffer.concat(pending.parts, pending.bytes));
  }

  private headerBlock(id: number, flags: number, block: Buffer): void {
    let headers: Record<string, string>;
    try {
      headers = this.decoder.decode(block);
    } catch (err) {
      // The table can no longer be trusted to match the client's: the connection is over.
      return this.fail(H2_ERROR.COMPRESSION_ERROR, err instanceof HpackError ? err.message : String(err));
    }
    const existing = this.streams.get(id);
    if (existing) {
      // Trailers from the client: they must end its side.
      if (!(flags & FLAG_END_STREAM) || existing.remoteDone) return this.resetStream(existing, H2_ERROR.PROTOCOL_ERROR);
      return this.remoteEnd(existing);
    }
    if (id <= this.lastStreamId) return this.fail(H2_ERROR.STREAM_CLOSED, `HEADERS on closed stream ${id}`);
    if (id % 2 === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, `a client opened even stream ${id}`);
    this.lastStreamId = id;
    if (this.goingAway || this.streams.size >= MAX_STREAMS) {
      this.push(frameHeader(4, RST_STREAM, 0, id), u32(H2_ERROR.REFUSED_STREAM));
      return;
    }
    const s = new H2Stream(id, this, this.peerInitialWindow);
    this.streams.set(id, s);
    this.handler.stream(s, headers);
    if (flags & FLAG_END_STREAM && !s.closed) this.remoteEnd(s);
  }

  private onSettings(flags: number, id: number, p: Buffer): void {
    if (id !== 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & FLAG_ACK) {
      if (p.length !== 0) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, "a SETTINGS ACK carries nothing");
      return;
    }
    if (p.length % 6 !== 0) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, "SETTINGS is a list of 6-byte entries");
    for (let i = 0; i < p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const value = p.readUInt32BE(i + 2);
      switch (key) {
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) return this.fail(H2_ERROR.FLOW_CONTROL_ERROR, `initial window ${value}`);
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) s.sendWindow += delta;
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < DEFAULT_FRAME_SIZE || value > 0xffffff) return this.fail(H2_ERROR.PROTOCOL_ERROR, `max frame size ${value}`);
          this.peerMaxFrame = value;
          break;
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) return this.fail(H2_ERROR.PROTOCOL_ERROR, `enable push ${value}`);
          break;
        case SETTINGS_HEADER_TABLE_SIZE:
        case SETTINGS_MAX_CONCURRENT_STREAMS:
        case SETTINGS_MAX_HEADER_LIST_SIZE:
        default:
          // berth's header blocks use no dynamic table and are small; it opens no streams.
          break;
      }
    }
    this.push(SETTINGS_ACK);
    this.pumpBlocked();
  }

  private onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) return this.fail(H2_ERROR.FRAME_SIZE_ERROR, "WINDOW_UPDATE is 4 bytes");
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) return this.fail(H2_ERROR.PROTOCOL_ERROR, "a connection window update of 0");
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) return this.fail(H2_ERROR.FLOW_CONTROL_ERROR, "the connection window overflowed");
      this.pumpBlocked();
      return;
    }
    const s = this.streams.get(id);
    if (!s) return;
    if (inc === 0) return this.resetStream(s, H2_ERROR.PROTOCOL_ERROR);
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) return this.resetStream(s, H2_ERROR.FLOW_CONTROL_ERROR);
    if (this.blocked.has(s)) {
      this.pump(s);
      this.afterPump(s);
    }
  }

  private remoteEnd(s: H2Stream): void {
    s.remoteDone = true;
    s.sink?.ended();
    if (s.localDone && s.queue.length === 0 && !s.closed) this.close(s);
  }

  // ---- output ------------------------------------------------------------------------------

  private push(a: Buffer, b?: Buffer, c?: Buffer): void {
    if (this.dead) return;
    this.out.push(a);
    this.outBytes += a.length;
    if (b) {
      this.out.push(b);
      this.outBytes += b.length;
    }
    if (c) {
      this.out.push(c);
      this.outBytes += c.length;
    }
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushFn);
    }
  }

  private flush(): void {
    this.flushQueued = false;
    const out = this.out;
    const bytes = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    const written = this.written;
    if (written.length) this.written = [];
    if (out.length === 0 || this.dead || this.socket.destroyed) return;
    if (out.length === 1) {
      this.socket.write(out[0]!);
    } else if (bytes <= CONCAT_MAX) {
      this.socket.write(Buffer.concat(out, bytes));
    } else {
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
    for (const cb of written) cb();
    if (this.socket.writableLength > MAX_BACKLOG) this.destroy();
    else this.checkDrain();
  }

  /** @internal */
  sendHeaders(s: H2Stream, block: Buffer, end: boolean): void {
    const endFlag = end ? FLAG_END_STREAM : 0;
    if (block.length <= this.peerMaxFrame) {
      this.push(frameHeader(block.length, HEADERS, FLAG_END_HEADERS | endFlag, s.id), block);
      return;
    }
    const max = this.peerMaxFrame;
    this.push(frameHeader(max, HEADERS, endFlag, s.id), block.subarray(0, max));
    for (let off = max; off < block.length; off += max) {
      const part = block.subarray(off, off + max);
      this.push(frameHeader(part.length, CONTINUATION, off + max >= block.length ? FLAG_END_HEADERS : 0, s.id), part);
    }
  }

  /** @internal */
  sendData(s: H2Stream, data: Buffer, cb: (() => void) | undefined): void {
    s.queue.push({ data, cb });
    s.queuedBytes += data.length;
    if (s.queue.length === 1) {
      this.pump(s);
      if (s.queue.length > 0) this.blocked.add(s);
    }
  }

  /** Sends what the windows let through of a stream's queue. */
  private pump(s: H2Stream): void {
    while (s.queue.length > 0) {
      const q = s.queue[0]!;
      const room = Math.min(this.sendWindow, s.sendWindow, this.peerMaxFrame);
      if (room <= 0 && q.data.length > 0) return;
      const n = Math.min(room, q.data.length);
      const part = n === q.data.length ? q.data : q.data.subarray(0, n);
      this.push(frameHeader(n, DATA, 0, s.id), part);
      this.sendWindow -= n;
      s.sendWindow -= n;
      s.queuedBytes -= n;
      if (n < q.data.length) {
        q.data = q.data.subarray(n);
        continue;
      }
      s.queue.shift();
      if (q.cb) this.written.push(q.cb);
    }
  }

  /** After a stream's queue moved: its trailers, its end, "drain". */
  private afterPump(s: H2Stream): void {
    if (s.queue.length > 0) return;
    this.blocked.delete(s);
    if (s.trailers) {
      const t = s.trailers;
      s.trailers = undefined;
      this.sendHeaders(s, t, true);
      this.localEnd(s);
    }
  }

  private pumpBlocked(): void {
    for (const s of this.blocked) {
      if (this.sendWindow <= 0) break;
      this.pump(s);
      this.afterPump(s);
    }
  }

  /** @internal berth's END_STREAM went (or is queued): the stream closes once the client's side is done too. */
  localEnd(s: H2Stream): void {
    s.localDone = true;
    if (s.closed) return;
    if (s.remoteDone) {
      this.close(s);
      return;
    }
    // Answered before the client finished sending: it need send no more (what gRPC servers do).
    this.push(frameHeader(4, RST_STREAM, 0, s.id), u32(H2_ERROR.NO_ERROR));
    this.close(s);
  }

  /** @internal */
  resetStream(s: H2Stream, code: number): void {
    if (s.closed) return;
    this.push(frameHeader(4, RST_STREAM, 0, s.id), u32(code));
    this.close(s);
  }

  private close(s: H2Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    this.blocked.delete(s);
    this.drainWaiters.delete(s);
    s.queue = [];
    s.queuedBytes = 0;
    s.sink?.closed();
    if (this.goingAway && this.streams.size === 0) this.endSoon();
  }

  /** Ends the socket once what is queued has been written (and drops it if the client does not close its side soon). */
  private endSoon(): void {
    queueMicrotask(() => {
      if (this.out.length) this.flush();
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    });
  }

  /** A connection error: GOAWAY with `code`, then the socket closes. */
  private fail(code: number, why: string): void {
    if (this.dead) return;
    const debug = Buffer.from(why.slice(0, 256), "utf8");
    this.push(frameHeader(8 + debug.length, GOAWAY, 0, 0), Buffer.concat([u32(this.lastStreamId), u32(code)]), debug);
    this.flush();
    this.dead = true;
    this.socket.end();
    // A client that neither reads nor closes is not waited for.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.gone();
  }

  private gone(): void {
    this.dead = true;
    if (this.over) return;
    this.over = true;
    if (this.streams.size) {
      for (const s of [...this.streams.values()]) this.close(s);
    }
    const cbs = this.written;
    this.written = [];
    for (const cb of cbs) cb();
    this.onClose(this);
  }
}
