// SPDY/3 header compression: one zlib stream per direction for the whole session, primed
// with the SPDY/3 dictionary, each header block ending at a sync flush.
import zlib from "node:zlib";
import { SPDY3_DICTIONARY } from "./spdy-dictionary.js";
import { SpdyProtocolError } from "./spdy-frames.js";

/** Largest uncompressed header block berth accepts (a zlib bomb guard). */
export const MAX_HEADER_BLOCK = 256 * 1024;

/** Runs zlib work one block at a time, in order, collecting the output of each block. */
class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

function flushBlock(z: zlib.Deflate | zlib.Inflate, input: Buffer, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let size = 0;
    let failed = false;
    const onData = (d: Buffer) => {
      size += d.length;
      if (size > limit && !failed) {
        failed = true;
        finish(new SpdyProtocolError(`header block exceeds ${limit} bytes uncompressed`));
        return;
      }
      out.push(d);
    };
    const onError = (err: Error) => finish(new SpdyProtocolError(`header block does not decompress: ${err.message}`));
    const finish = (err?: Error) => {
      z.off("data", onData);
      z.off("error", onError);
      if (err) reject(err);
      else resolve(Buffer.concat(out));
    };
    z.on("data", onData);
    z.once("error", onError);
    z.write(input);
    z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      if (!failed) finish();
    });
  });
}

export class HeaderCompressor {
  private readonly z = zlib.createDeflate({ dictionary: SPDY3_DICTIONARY });
  private readonly serial = new Serial();
  compress(block: Buffer): Promise<Buffer> {
    return this.serial.run(() => flushBlock(this.z, block, Number.MAX_SAFE_INTEGER));
  }
  close(): void {
    this.z.close();
  }
}

export class HeaderDecompressor {
  private readonly z = zlib.createInflate({ dictionary: SPDY3_DICTIONARY });
  private readonly serial = new Serial();
  private broken: Error | undefined;
  constructor() {
    this.z.on("error", (err) => (this.broken ??= err));
  }
  decompress(block: Buffer): Promise<Buffer> {
    return this.serial.run(async () => {
      if (this.broken) throw new SpdyProtocolError(`header compression context is broken: ${this.broken.message}`);
      return flushBlock(this.z, block, MAX_HEADER_BLOCK);
    });
  }
  close(): void {
    this.z.close();
  }
}
