// berthd's own log in a file (config log_file) rotated by size: when the next line would take
// the file past its maximum, <file>.N-1 becomes <file>.N ... <file> becomes <file>.1, and a new
// <file> is started; the oldest beyond the kept count is dropped. Lines are never split.
import { mkdir, open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { isErrno } from "./errors.js";

export class RotatingFile extends Writable {
  private fh: FileHandle | undefined;
  private size = 0;
  private failedOnce = false;

  private constructor(readonly file: string, private readonly maxBytes: number, private readonly keep: number) {
    super({ decodeStrings: true });
  }

  /** Opens (appends to) `file`; keeps `keep` rotated files of at most about `maxBytes` each. */
  static async open(file: string, maxBytes: number, keep: number): Promise<RotatingFile> {
    const r = new RotatingFile(file, maxBytes, keep);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    r.fh = await open(file, "a", 0o640);
    r.size = (await r.fh.stat()).size;
    return r;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.append(chunk).then(() => cb(), (err: Error) => {
      // A full or broken disk must not take the daemon down: the line goes to stderr instead.
      if (!this.failedOnce) process.stderr.write(`berthd: cannot write log file ${this.file}: ${err.message}; logging to stderr\n`);
      this.failedOnce = true;
      process.stderr.write(chunk);
      cb();
    });
  }

  private async append(chunk: Buffer): Promise<void> {
    if (this.size > 0 && this.size + chunk.length > this.maxBytes) await this.rotate();
    await this.fh!.write(chunk);
    this.size += chunk.length;
  }

  private async rotate(): Promise<void> {
    await this.fh!.close();
    this.fh = undefined;
    await unlink(`${this.file}.${this.keep}`).catch(ignoreMissing);
    for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(ignoreMissing);
    if (this.keep > 0) await rename(this.file, `${this.file}.1`);
    else await unlink(this.file).catch(ignoreMissing);
    this.fh = await open(this.file, "a", 0o640);
    this.size = 0;
  }

  override _final(cb: (err?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    (fh ? fh.close() : Promise.resolve()).then(() => cb(), cb);
  }
}

function ignoreMissing(err: unknown): void {
  if (!isErrno(err, "ENOENT")) throw err;
}

/** The files a rotated log consists of, newest first (for tests and `berthd doctor`). */
export async function rotatedFiles(file: string, keep: number): Promise<string[]> {
  const out: string[] = [];
  for (const f of [file, ...Array.from({ length: keep }, (_, i) => `${file}.${i + 1}`)]) {
    if (await stat(f).then(() => true, () => false)) out.push(f);
  }
  return out;
}
