// Start-up warm-up: berthd calls itself, through its own socket and its whole gRPC stack (h2.ts,
// server.ts, the handlers), before kubelet's polls come. Node compiles a function to fast machine
// code only after it has run many times; a call kubelet makes once a second or once every 5 s
// would run interpreted for its first minutes, and an interpreted call answers in about twice the
// time (bench/REPORT.md, "JIT warm-up"). The calls are read-only ones (the daemon wires which), sent
// one at a time, each after the last answer, so kubelet's own calls interleave. They come in on a
// connection the server marks internal: not logged, not in the RPC metrics.
import net from "node:net";
import { encodeFrame } from "./h2.js";
import { literal } from "./hpack.js";

export interface WarmupCall {
  /** "/runtime.v1.RuntimeService/Version" */
  path: string;
  /** The request message, encoded. */
  message: Uint8Array;
}


const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const MAX_WINDOW = 2 ** 31 - 1;

/**
 * Sends `rounds` rounds of `calls` over one connection to `socket` and resolves once the last
 * answer came (or the connection ended, or `signal` aborted). Answers are read and dropped.
 */
export async function warmUp(socket: string, calls: WarmupCall[], rounds: number, signal?: AbortSignal): Promise<number> {
  if (calls.length === 0 || rounds <= 0) return 0;
  const requests = calls.map((c) => {
    const headers = Buffer.concat([
      Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table)
      literal(4, c.path), literal(1, "localhost"), literal(31, "application/grpc"), literal("te", "trailers"),
    ]);
    const body = Buffer.alloc(5 + c.message.length);
    body.writeUInt32BE(c.message.length, 1);
    Buffer.from(c.message).copy(body, 5);
    return { headers, body };
  });
  const conn = net.connect(socket);
  let done = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once("connect", resolve);
      conn.once("error", reject);
    });
    let rest: Buffer = Buffer.alloc(0);
    let waiting: { id: number; resolve: () => void } | undefined;
    const ended = new Promise<void>((resolve) => conn.once("close", resolve));
    conn.on("error", () => undefined);
    conn.on("data", (chunk: Buffer) => {
      rest = rest.length ? Buffer.concat([rest, chunk]) : chunk;
      while (rest.length >= 9) {
        const len = rest.readUIntBE(0, 3);
        if (rest.length < 9 + len) break;
        const type = rest[3]!;
        const flags = rest[4]!;
        const id = rest.readUInt32BE(5) & 0x7fffffff;
        rest = rest.subarray(9 + len);
        // The server's SETTINGS want an ACK; an answer ends with END_STREAM (HEADERS) or RST_STREAM.
        if (type === 0x4 && !(flags & 0x1)) conn.write(encodeFrame(0x4, 0x1, 0, Buffer.alloc(0)));
        else if (waiting && id === waiting.id && ((type === 0x1 && flags & 0x1) || type === 0x3)) {
          const w = waiting;
          waiting = undefined;
          w.resolve();
        }
      }
    });
    // Windows as large as allowed: the answers are never read by anything that needs pacing.
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0);
    settings.writeUInt32BE(MAX_WINDOW, 2);
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(MAX_WINDOW - 65_535, 0);
    conn.write(Buffer.concat([PREFACE, encodeFrame(0x4, 0, 0, settings), encodeFrame(0x8, 0, 0, increment)]));
    let id = 1;
    for (let r = 0; r < rounds; r++) {
      for (const req of requests) {
        if (signal?.aborted || conn.destroyed) return done;
        const answered = new Promise<void>((resolve) => (waiting = { id, resolve }));
        conn.write(Buffer.concat([encodeFrame(0x1, 0x4, id, req.headers), encodeFrame(0x0, 0x1, id, req.body)]));
        await Promise.race([answered, ended]);
        id += 2;
        done++;
      }
      // Between rounds, let everything else that waits run first.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return done;
  } finally {
    conn.destroy();
  }
}
