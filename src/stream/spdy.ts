// The server side of a SPDY/3.1 session over an upgraded HTTP connection: peer-initiated
// streams (SYN_STREAM -> SYN_REPLY), DATA with per-stream and session flow control,
// RST_STREAM, PING, SETTINGS, GOAWAY. Each stream is a Node Duplex.
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import type { Logger } from "../log.js";
import {
  DEFAULT_WINDOW, FLAG_FIN, FLAG_UNIDIRECTIONAL, FrameReader, GoawayStatus, RstStatus, SETTINGS_INITIAL_WINDOW_SIZE,
  SpdyProtocolError, decodeHeaderBlock, encodeData, encodeGoaway, encodeHeaderBlock, encodePing, encodeRstStream,
  encodeSynReply, encodeWindowUpdate, type Frame, type HeaderList,
} from "./spdy-frames.js";
import { HeaderCompressor, HeaderDecompressor } from "./spdy-headers.js";

/** Largest frame berth accepts: clients send stdin in 32 KiB pieces; headers are small. */
const MAX_FRAME_IN = 1024 * 1024;
/** Largest DATA frame berth sends. */
const MAX_DATA_FRAME = 16 * 1024;
/** Unconsumed bytes a stream may buffer before berth stops reading the socket (peers that ignore windows). */
const STREAM_BUFFER_LIMIT = 1024 * 1024;
const MAX_WINDOW = 0x7fff_ffff;

export interface SpdySessionOptions {
  log?: Logger;
  /** At most this many open peer-initiated streams; more are refused. */
  maxStreams?: number;
}

export class SpdyStreamClosedError extends Error {}

export class SpdyStream extends Duplex {
  /** Window the peer granted us for this stream. */
  sendWindow: number;
  private waiters: Array<() => void> = [];
  private unacked = 0;
  private held = 0;
  private repliedFlag = false;
  private replyDone!: () => void;
  private readonly replied = new Promise<void>((r) => (this.replyDone = r));
  remoteClosed: boolean;
  localClosed: boolean;
  private resetSeen = false;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    readonly headers: Map<string, string>,
    remoteFin: boolean,
    unidirectional: boolean,
    sendWindow: number,
  ) {
    super({ allowHalfOpen: true, highWaterMark: 64 * 1024 });
    this.sendWindow = sendWindow;
    this.remoteClosed = remoteFin;
    this.localClosed = unidirectional;
    if (remoteFin) this.push(null);
  }

  /** Sends SYN_REPLY (once); data written before it waits for it. */
  async reply(headers: HeaderList = [], fin = false): Promise<void> {
    if (this.repliedFlag) return;
    this.repliedFlag = true;
    try {
      await this.session.sendReply(this, headers, fin);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    if (fin) this.localClosed = true;
    this.replyDone();
  }

  /** Aborts the stream with RST_STREAM. */
  reset(status: number = RstStatus.CANCEL): void {
    if (!this.resetSeen) {
      this.resetSeen = true;
      this.session.sendRst(this.id, status);
    }
    this.destroy();
  }

  /** Called by the session when the peer grants more window (or the session window grew). */
  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  waitWindow(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  onData(data: Buffer, fin: boolean): void {
    if (this.remoteClosed) {
      this.session.sendRst(this.id, RstStatus.STREAM_ALREADY_CLOSED);
      return;
    }
    if (data.length > 0) {
      if (this.push(data)) this.consumed(data.length);
      else {
        this.held += data.length;
        if (this.readableLength > STREAM_BUFFER_LIMIT) this.session.block(this);
      }
    }
    if (fin) {
      this.remoteClosed = true;
      this.push(null);
      this.session.maybeForget(this);
    }
  }

  onReset(): void {
    this.resetSeen = true;
    this.destroy(new SpdyStreamClosedError(`stream ${this.id} was reset by the peer`));
  }

  private consumed(n: number): void {
    this.unacked += n;
    if (this.unacked >= DEFAULT_WINDOW / 4 && !this.remoteClosed) {
      this.session.sendWindowUpdate(this.id, this.unacked);
      this.unacked = 0;
    }
  }

  override _read(): void {
    if (this.held > 0) {
      const n = this.held;
      this.held = 0;
      this.consumed(n);
    }
    this.session.unblock(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.replied.then(() => this.session.sendData(this, chunk)).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.replied.then(() => {
      if (!this.localClosed && !this.destroyed) {
        this.localClosed = true;
        this.session.sendFin(this);
      }
      this.session.maybeForget(this);
      cb();
    }, cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.resetSeen && !(this.localClosed && this.remoteClosed)) {
      this.resetSeen = true;
      this.session.sendRst(this.id, RstStatus.CANCEL);
    }
    this.localClosed = this.remoteClosed = true;
    this.replyDone();
    this.wake();
    this.session.forget(this);
    cb(err);
  }
}

/**
 * Events: "stream" (stream, headers) for each SYN_STREAM; "close" once, when the connection is gone.
 * Flow control: berth always grants window as it consumes data. It honours the peer's windows
 * once the peer shows it does flow control (a WINDOW_UPDATE or an initial-window SETTINGS):
 * Go's spdystream, which every kubelet/crictl client uses, neither sends WINDOW_UPDATE nor
 * limits what it sends, so holding it to a 64 KiB window would stall every stream for good.
 */
export class SpdySession extends EventEmitter {
  private readonly reader = new FrameReader(MAX_FRAME_IN);
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private readonly blocked = new Set<SpdyStream>();
  private lastPeerStreamId = 0;
  private peerFlowControl = false;
  private peerInitialWindow = DEFAULT_WINDOW;
  private sessionSendWindow = DEFAULT_WINDOW;
  private sessionUnacked = 0;
  private inbound: Promise<void> = Promise.resolve();
  private goneAway = false;
  closed = false;
  private readonly maxStreams: number;
  private readonly log: Logger | undefined;

  constructor(private readonly socket: Duplex, opts: SpdySessionOptions = {}) {
    super();
    this.log = opts.log;
    this.maxStreams = opts.maxStreams ?? 1000;
    socket.on("data", (chunk: Buffer) => this.onBytes(chunk));
    socket.on("error", (err) => this.log?.debug({ err: err.message }, "spdy connection error"));
    socket.on("close", () => this.teardown());
    socket.on("end", () => {
      // The peer will send nothing more; finishing our writes is pointless for these protocols.
      this.close();
    });
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Sends GOAWAY and closes the connection after pending writes; every stream ends. */
  close(status: number = GoawayStatus.OK): void {
    if (this.closed) return;
    if (!this.goneAway && this.writable()) {
      this.goneAway = true;
      this.socket.write(encodeGoaway(this.lastPeerStreamId, status));
    }
    this.closed = true;
    for (const s of [...this.streams.values()]) s.destroy();
    this.socket.end();
    // A peer that never closes its side must not keep the socket (and this session) alive.
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  private teardown(): void {
    if (!this.closed) this.closed = true;
    for (const s of [...this.streams.values()]) s.destroy();
    this.streams.clear();
    this.compressor.close();
    this.decompressor.close();
    this.emit("close");
  }

  private writable(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  private write(frame: Buffer): boolean {
    if (!this.writable()) return true;
    return this.socket.write(frame);
  }

  private waitDrain(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    this.reader.push(chunk);
    try {
      for (let f = this.reader.next(); f; f = this.reader.next()) {
        const frame = f;
        this.inbound = this.inbound.then(() => (this.closed ? undefined : this.handle(frame))).catch((err) => this.fail(err));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    if (err instanceof SpdyProtocolError && err.streamId !== 0) {
      this.sendRst(err.streamId, err.status);
      this.streams.get(err.streamId)?.destroy();
      return;
    }
    this.log?.debug({ err: (err as Error).message }, "spdy protocol error: closing the connection");
    this.close(GoawayStatus.PROTOCOL_ERROR);
  }

  private async handle(f: Frame): Promise<void> {
    switch (f.type) {
      case "syn_stream": {
        // Decompress first so the shared zlib context stays in step even for refused streams.
        const headers = decodeHeaderBlock(await this.decompressor.decompress(f.headerBlock));
        if (f.streamId % 2 !== 1 || f.streamId <= this.lastPeerStreamId) {
          throw new SpdyProtocolError(`SYN_STREAM with stream id ${f.streamId} after ${this.lastPeerStreamId} (client ids are odd and increasing)`);
        }
        this.lastPeerStreamId = f.streamId;
        if (this.goneAway || this.streams.size >= this.maxStreams) {
          this.sendRst(f.streamId, RstStatus.REFUSED_STREAM);
          return;
        }
        const stream = new SpdyStream(this, f.streamId, headers, (f.flags & FLAG_FIN) !== 0, (f.flags & FLAG_UNIDIRECTIONAL) !== 0, this.peerInitialWindow);
        // A stream's failure ends that stream only; it must never become an unhandled 'error'.
        stream.on("error", (err) => this.log?.debug({ stream: f.streamId, err: err.message }, "spdy stream error"));
        this.streams.set(f.streamId, stream);
        this.emit("stream", stream, headers);
        return;
      }
      case "syn_reply":
      case "headers":
        await this.decompressor.decompress(f.headerBlock);
        // berth opens no streams of its own: a reply or trailer names a stream it never made.
        if (f.type === "syn_reply") this.sendRst(f.streamId, RstStatus.INVALID_STREAM);
        return;
      case "data": {
        this.sessionUnacked += f.data.length;
        if (this.sessionUnacked >= DEFAULT_WINDOW / 4) {
          this.sendWindowUpdate(0, this.sessionUnacked);
          this.sessionUnacked = 0;
        }
        const stream = this.streams.get(f.streamId);
        if (!stream) {
          if (f.streamId > this.lastPeerStreamId || f.streamId === 0) this.sendRst(f.streamId, RstStatus.INVALID_STREAM);
          return;
        }
        stream.onData(f.data, (f.flags & FLAG_FIN) !== 0);
        return;
      }
      case "rst_stream":
        this.streams.get(f.streamId)?.onReset();
        return;
      case "settings":
        for (const e of f.entries) {
          if (e.id !== SETTINGS_INITIAL_WINDOW_SIZE) continue;
          if (e.value > MAX_WINDOW) throw new SpdyProtocolError(`SETTINGS initial window ${e.value} exceeds 2^31-1`);
          const delta = e.value - this.peerInitialWindow;
          this.peerInitialWindow = e.value;
          this.peerFlowControl = true;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            s.wake();
          }
        }
        return;
      case "ping":
        // Odd ids are the client's pings: echo them. berth sends none, so even ids are ignored.
        if (f.id % 2 === 1) this.write(encodePing(f.id));
        return;
      case "goaway":
        this.goneAway = true;
        if (this.streams.size === 0) this.close();
        return;
      case "window_update": {
        this.peerFlowControl = true;
        if (f.delta === 0) throw new SpdyProtocolError(`WINDOW_UPDATE with delta 0`, f.streamId, RstStatus.FLOW_CONTROL_ERROR);
        if (f.streamId === 0) {
          if (this.sessionSendWindow + f.delta > MAX_WINDOW) throw new SpdyProtocolError("session window overflow");
          this.sessionSendWindow += f.delta;
          for (const s of this.streams.values()) s.wake();
          return;
        }
        const s = this.streams.get(f.streamId);
        if (!s) return;
        if (s.sendWindow + f.delta > MAX_WINDOW) throw new SpdyProtocolError(`stream ${f.streamId} window overflow`, f.streamId, RstStatus.FLOW_CONTROL_ERROR);
        s.sendWindow += f.delta;
        s.wake();
        return;
      }
      case "unknown":
        return; // SPDY: ignore unknown control frames
    }
  }

  async sendReply(stream: SpdyStream, headers: HeaderList, fin: boolean): Promise<void> {
    const block = await this.compressor.compress(encodeHeaderBlock(headers));
    this.write(encodeSynReply(stream.id, fin ? FLAG_FIN : 0, block));
  }

  sendRst(streamId: number, status: number): void {
    this.write(encodeRstStream(streamId, status));
  }

  sendWindowUpdate(streamId: number, delta: number): void {
    this.write(encodeWindowUpdate(streamId, delta));
  }

  sendFin(stream: SpdyStream): void {
    this.write(encodeData(stream.id, FLAG_FIN, Buffer.alloc(0)));
  }

  async sendData(stream: SpdyStream, chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (stream.destroyed || stream.localClosed) throw new SpdyStreamClosedError(`stream ${stream.id} is closed`);
      let n = Math.min(chunk.length - off, MAX_DATA_FRAME);
      if (this.peerFlowControl) {
        n = Math.min(n, stream.sendWindow, this.sessionSendWindow);
        if (n <= 0) {
          await stream.waitWindow();
          continue;
        }
        stream.sendWindow -= n;
        this.sessionSendWindow -= n;
      }
      const ok = this.write(encodeData(stream.id, 0, chunk.subarray(off, off + n)));
      off += n;
      if (!ok) await this.waitDrain();
    }
  }

  /** Stops reading the socket while a stream holds more than it may buffer. */
  block(stream: SpdyStream): void {
    this.blocked.add(stream);
    this.socket.pause();
  }

  unblock(stream: SpdyStream): void {
    if (this.blocked.delete(stream) && this.blocked.size === 0 && !this.closed) this.socket.resume();
  }

  maybeForget(stream: SpdyStream): void {
    if (stream.localClosed && stream.remoteClosed) this.forget(stream);
  }

  forget(stream: SpdyStream): void {
    if (this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
    this.unblock(stream);
    if (this.goneAway && this.streams.size === 0 && !this.closed) this.close();
  }
}
