// A layer's hashing and gunzip on a worker thread (decode-worker.ts), off the main thread: on a
// pull of large layers those took over half of the main thread's time, and the tar unpack and
// the registry's sockets waited behind them. The main thread copies the registry's bytes into
// 1 MiB messages, the worker sends the tar back in 1 MiB messages, and both directions are
// bounded by credits. The worker starts with a pull (prewarm) and exits when idle, so an idle
// daemon holds no thread.
import { Duplex } from "node:stream";
import { Worker } from "node:worker_threads";

/**
 * Compressed bytes the main thread may have sent that the worker has not yet fed to gunzip (for
 * an uncompressed layer: whose bytes the main thread has not yet taken back).
 */
export const IN_CREDIT = 4 << 20;
/** Tar bytes the worker may have sent that the main thread's unpack has not yet asked for (gzip). */
export const OUT_CREDIT = 4 << 20;
export const IN_BATCH = 1 << 20;
export const OUT_BATCH = 1 << 20;
/** An idle worker exits after this long (well before the daemon's idle memory trim). */
const IDLE_MS = 500;

export type ToWorker =
  | { t: "start"; id: number; gzip: boolean; inflateChunk: number }
  | { t: "data"; id: number; buf: ArrayBuffer; len: number }
  | { t: "end"; id: number }
  | { t: "ack"; id: number; len: number }
  | { t: "abort"; id: number };

export type FromWorker =
  | { t: "out"; id: number; buf: ArrayBuffer; len: number }
  | { t: "taken"; id: number; len: number }
  | { t: "done"; id: number; compressed: string; diff: string }
  | { t: "error"; id: number; message: string; code: string | undefined };

export interface Digests {
  /** sha256 of the bytes written, "sha256:<hex>". */
  compressed: string;
  /** sha256 of the bytes read out (the tar). */
  diff: string;
}

class DecodePool {
  private worker: Worker | undefined;
  private readonly streams = new Map<number, LayerDecoder>();
  private nextId = 1;
  private idle: NodeJS.Timeout | undefined;

  private ensure(): Worker {
    clearTimeout(this.idle);
    this.idle = undefined;
    if (this.worker) return this.worker;
    const w = new Worker(new URL("./decode-worker.js", import.meta.url));
    // Only a stream in progress keeps the process alive (open and close ref and unref it).
    w.unref();
    w.on("message", (m: FromWorker) => this.streams.get(m.id)?.fromWorker(m));
    const gone = (err: Error) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      for (const s of [...this.streams.values()]) s.destroy(err);
      this.streams.clear();
    };
    w.once("error", (err) => gone(new Error(`layer decode worker failed: ${err.message}`, { cause: err })));
    w.once("exit", (code) => gone(new Error(`layer decode worker exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  /** Starts the worker ahead of the first layer (a pull calls this before its manifest round trips). */
  prewarm(): void {
    this.ensure();
    this.armIdle();
  }

  open(s: LayerDecoder): number {
    const id = this.nextId++;
    this.ensure().ref();
    this.streams.set(id, s);
    return id;
  }

  post(m: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker?.postMessage(m, transfer);
  }

  close(id: number): void {
    this.streams.delete(id);
    if (this.streams.size === 0) this.worker?.unref();
    this.armIdle();
  }

  private armIdle(): void {
    if (this.streams.size > 0 || !this.worker) return;
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.streams.size > 0 || !this.worker) return;
      const w = this.worker;
      this.worker = undefined;
      void w.terminate();
    }, IDLE_MS);
    this.idle.unref();
  }
}

const pool = new DecodePool();

/** Starts the decode worker if it is not running (it exits again when left idle). */
export function prewarmDecoder(): void {
  pool.prewarm();
}

/**
 * Bytes gathered into transferable ArrayBuffers of `size` bytes (the chunks that come in are
 * views of buffers their producer reuses, so they are copied once, here); `ship` gets each
 * buffer when it fills and on flush(). Both directions of the worker's traffic use it.
 */
export class TransferBatch {
  private buf: Buffer | undefined;
  private used = 0;

  constructor(private readonly size: number, private readonly ship: (buf: ArrayBuffer, len: number) => void) {}

  add(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      this.buf ??= Buffer.from(new ArrayBuffer(this.size));
      const n = chunk.copy(this.buf, this.used, off);
      this.used += n;
      off += n;
      if (this.used === this.size) this.flush();
    }
  }

  flush(): void {
    if (!this.buf || this.used === 0) return;
    const buf = this.buf.buffer as ArrayBuffer;
    const len = this.used;
    this.buf = undefined;
    this.used = 0;
    this.ship(buf, len);
  }
}

/**
 * Compressed layer bytes in, the tar out; digests() gives both sha256s once the readable side
 * has ended. Errors from gunzip keep zlib's code (Z_DATA_ERROR, ...).
 */
export class LayerDecoder extends Duplex {
  private readonly id: number;
  private readonly batch = new TransferBatch(IN_BATCH, (buf, len) => {
    this.inflight += len;
    pool.post({ t: "data", id: this.id, buf, len }, [buf]);
  });
  /** Compressed bytes sent and not yet taken by gunzip. */
  private inflight = 0;
  /** Tar bytes received and pushed but not yet acknowledged to the worker. */
  private unacked = 0;
  private waitingWrite: (() => void) | undefined;
  private waitingFinal: ((err?: Error | null) => void) | undefined;
  private result: Digests | undefined;
  private released = false;

  constructor(gzip: boolean, inflateChunk: number) {
    super({ readableHighWaterMark: OUT_BATCH, writableHighWaterMark: IN_BATCH });
    this.id = pool.open(this);
    pool.post({ t: "start", id: this.id, gzip, inflateChunk });
  }

  digests(): Digests {
    if (!this.result) throw new Error("layer decoder: digests asked for before the end of the stream");
    return this.result;
  }

  private blocked(): boolean {
    return this.inflight >= IN_CREDIT;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.batch.add(chunk);
    if (this.blocked()) this.waitingWrite = () => cb();
    else cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.batch.flush();
    pool.post({ t: "end", id: this.id });
    this.waitingFinal = cb;
  }

  override _read(): void {
    if (this.unacked > 0) {
      pool.post({ t: "ack", id: this.id, len: this.unacked });
      this.unacked = 0;
    }
  }

  private maybeUnblock(): void {
    if (this.waitingWrite && !this.blocked()) {
      const w = this.waitingWrite;
      this.waitingWrite = undefined;
      w();
    }
  }

  /** Messages for this stream, from the pool. */
  fromWorker(m: FromWorker): void {
    if (this.released) return;
    switch (m.t) {
      case "out": {
        const more = this.push(Buffer.from(m.buf, 0, m.len));
        if (more) pool.post({ t: "ack", id: this.id, len: m.len });
        else this.unacked += m.len;
        return;
      }
      case "taken":
        this.inflight -= m.len;
        this.maybeUnblock();
        return;
      case "done": {
        this.result = { compressed: `sha256:${m.compressed}`, diff: `sha256:${m.diff}` };
        this.release();
        this.push(null);
        const f = this.waitingFinal;
        this.waitingFinal = undefined;
        f?.();
        return;
      }
      case "error": {
        const err = new Error(m.message) as NodeJS.ErrnoException;
        if (m.code) err.code = m.code;
        this.release();
        this.destroy(err);
        return;
      }
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    pool.close(this.id);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.released) {
      pool.post({ t: "abort", id: this.id });
      this.release();
    }
    cb(err);
  }
}
