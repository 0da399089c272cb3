// A fault-injecting HTTP proxy in front of the real docker-registry, which cannot be made to
// misbehave itself: GETs of one blob get 5xx answers, a connection reset or a stall after the
// first bytes, corrupt bytes (a wrong digest), a truncated stream, or a slow but steady trickle.
import http from "node:http";
import type { AddressInfo } from "node:net";

export type ProxyFault = "503" | "reset" | "stall" | "corrupt" | "truncate" | "slow" | undefined;

export interface ProxyState {
  fault: ProxyFault;
  /** How many blob GETs still get the fault. */
  count: number;
  /** Blob GETs seen (faulty or not). */
  hits: number;
  /** The blob the faults apply to. */
  digest: string;
  /** "slow": bytes per tick and the tick. */
  slowBytes: number;
  slowEveryMs: number;
}

export interface FaultProxy {
  host: string;
  state: ProxyState;
  close(): Promise<void>;
}

const FIRST_BYTES = 4096;

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const state: ProxyState = { fault: undefined, count: 0, hits: 0, digest: "", slowBytes: 16 * 1024, slowEveryMs: 200 };
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const isBlob = req.method === "GET" && state.digest !== "" && (req.url ?? "").endsWith(`/blobs/${state.digest}`);
    if (isBlob) state.hits++;
    const fault = isBlob && state.count > 0 ? state.fault : undefined;
    if (fault) state.count--;
    if (fault === "503") {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected by the test proxy" }] }));
      return;
    }
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (ur) => {
      if (fault === "reset" || fault === "stall") {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        let sent = 0;
        ur.on("data", (c: Buffer) => {
          if (sent > FIRST_BYTES) return;
          sent += c.length;
          res.write(c.subarray(0, FIRST_BYTES));
          if (sent > FIRST_BYTES) {
            if (fault === "reset") res.socket?.destroy();
            ur.destroy();
          }
        });
        return;
      }
      if (fault === "corrupt" || fault === "truncate" || fault === "slow") {
        const parts: Buffer[] = [];
        ur.on("data", (c: Buffer) => parts.push(c));
        ur.on("end", () => {
          let body = Buffer.concat(parts);
          if (fault === "corrupt") {
            // Same length, other bytes: only the digest can tell.
            body = Buffer.from(body);
            for (let i = Math.floor(body.length / 2); i < body.length; i += 97) body[i] = body[i]! ^ 0xff;
          }
          if (fault === "truncate") body = body.subarray(0, Math.floor(body.length / 2));
          const headers = { ...ur.headers, "content-length": String(body.length) };
          res.writeHead(ur.statusCode ?? 502, headers);
          if (fault !== "slow") {
            res.end(body);
            return;
          }
          let off = 0;
          const tick = setInterval(() => {
            res.write(body.subarray(off, off + state.slowBytes));
            off += state.slowBytes;
            if (off >= body.length) {
              clearInterval(tick);
              timers.delete(tick);
              res.end();
            }
          }, state.slowEveryMs);
          timers.add(tick);
          res.on("close", () => {
            clearInterval(tick);
            timers.delete(tick);
          });
        });
        return;
      }
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => new Promise<void>((r) => {
      for (const t of timers) clearInterval(t);
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
