// The thread a layer's CPU work runs on (see decode.ts): for each stream the main thread sends,
// sha256 of the compressed bytes, gunzip, and sha256 of the tar that comes out; the tar goes
// back to the main thread, which unpacks it. Both directions are credit-bounded, so a slow disk
// or a decompression bomb holds at most a few MiB here.
import { createHash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { createGunzip, type Gunzip } from "node:zlib";
import { OUT_BATCH, OUT_CREDIT, TransferBatch, type FromWorker, type ToWorker } from "./decode.js";

interface Job {
  compressed: Hash;
  diff: Hash;
  gunzip: Gunzip | undefined;
  /** Output bytes sent and not yet taken by the main thread. */
  unacked: number;
  /** The tar on its way back, in OUT_BATCH pieces. */
  out: TransferBatch;
  failed: boolean;
}

const port = parentPort!;
const jobs = new Map<number, Job>();
const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

function fail(id: number, job: Job, err: unknown): void {
  if (job.failed) return;
  job.failed = true;
  jobs.delete(id);
  job.gunzip?.destroy();
  const e = err as NodeJS.ErrnoException;
  send({ t: "error", id, message: e?.message ?? String(err), code: typeof e?.code === "string" ? e.code : undefined });
}

function output(job: Job, chunk: Buffer): void {
  job.diff.update(chunk);
  job.out.add(chunk);
  if (job.unacked >= OUT_CREDIT) job.gunzip?.pause();
}

function finish(id: number, job: Job): void {
  job.out.flush();
  jobs.delete(id);
  send({ t: "done", id, compressed: job.compressed.digest("hex"), diff: job.diff.digest("hex") });
}

port.on("message", (m: ToWorker) => {
  if (m.t === "start") {
    const out = new TransferBatch(OUT_BATCH, (buf, len) => {
      job.unacked += len;
      send({ t: "out", id: m.id, buf, len }, [buf]);
    });
    const job: Job = { compressed: createHash("sha256"), diff: createHash("sha256"), gunzip: undefined, unacked: 0, out, failed: false };
    jobs.set(m.id, job);
    if (m.gzip) {
      const g = (job.gunzip = createGunzip({ chunkSize: m.inflateChunk }));
      g.on("data", (c: Buffer) => output(job, c));
      g.once("end", () => finish(m.id, job));
      g.once("error", (err) => fail(m.id, job, err));
    }
    return;
  }
  const job = jobs.get(m.id);
  if (!job) return;
  switch (m.t) {
    case "data": {
      const chunk = Buffer.from(m.buf, 0, m.len);
      job.compressed.update(chunk);
      if (job.gunzip) {
        job.gunzip.write(chunk, (err) => {
          if (!err) send({ t: "taken", id: m.id, len: m.len });
        });
      } else {
        // An uncompressed tar is its own diff: the buffer goes straight back, and counts as taken
        // once the main thread acknowledges it (its credit then covers its own backlog).
        job.diff.update(chunk);
        send({ t: "out", id: m.id, buf: m.buf, len: m.len }, [m.buf]);
      }
      return;
    }
    case "end":
      if (job.gunzip) job.gunzip.end();
      else finish(m.id, job);
      return;
    case "ack":
      if (!job.gunzip) {
        send({ t: "taken", id: m.id, len: m.len });
        return;
      }
      job.unacked -= m.len;
      if (job.unacked < OUT_CREDIT && job.gunzip.isPaused()) job.gunzip.resume();
      return;
    case "abort":
      jobs.delete(m.id);
      job.failed = true;
      job.gunzip?.destroy();
      return;
  }
});
