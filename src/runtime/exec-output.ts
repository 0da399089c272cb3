// ExecSync's output, read back from the CRI log conmon wrote, with bounded memory: the file is
// read in chunks and split as it goes, keeping at most `cap` bytes per stream, and reading stops
// once both streams are full or `maxRead` bytes were read. A command that prints gigabytes
// cannot make berthd load them.
import { open } from "node:fs/promises";
import { splitCriLog } from "./conmon.js";

const CHUNK = 1 << 20;

/**
 * What stdout and stderr may hold together: the response must fit kubelet's (and berth's) 16 MiB
 * gRPC message limit with room for its framing, else the call fails with RESOURCE_EXHAUSTED.
 */
export const EXEC_RESPONSE_BUDGET = 16 * 1024 * 1024 - 4096;

export async function readExecOutput(file: string, cap: number, maxRead = Math.max(8 * cap, 64 << 20), total = EXEC_RESPONSE_BUDGET): Promise<{ stdout: Buffer; stderr: Buffer }> {
  const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const size = { stdout: 0, stderr: 0 };
  let fh;
  try {
    fh = await open(file, "r");
  } catch {
    return { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  }
  try {
    let carry = Buffer.alloc(0);
    let read = 0;
    const take = (text: Buffer) => {
      const part = splitCriLog(text, cap);
      for (const s of ["stdout", "stderr"] as const) {
        const room = cap - size[s];
        const piece = part[s].subarray(0, Math.max(0, room));
        if (piece.length) out[s].push(piece);
        size[s] += piece.length;
      }
    };
    while (read < maxRead && (size.stdout < cap || size.stderr < cap)) {
      const buf = Buffer.alloc(Math.min(CHUNK, maxRead - read));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      read += bytesRead;
      const data = Buffer.concat([carry, buf.subarray(0, bytesRead)]);
      const end = data.lastIndexOf(10);
      // conmon splits long lines (P records), so a carry longer than a chunk is not a CRI log: drop it.
      carry = end < 0 ? (data.length > CHUNK ? Buffer.alloc(0) : data) : data.subarray(end + 1);
      if (end >= 0) take(data.subarray(0, end + 1));
    }
    if (carry.length) take(carry);
  } finally {
    await fh.close();
  }
  const stdout = Buffer.concat(out.stdout).subarray(0, total);
  return { stdout, stderr: Buffer.concat(out.stderr).subarray(0, Math.max(0, total - stdout.length)) };
}
