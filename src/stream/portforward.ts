// Kubernetes port forward over SPDY (portforward.k8s.io): for each forwarded connection the
// client opens an error stream and a data stream sharing `port` and `requestID` headers;
// berth connects the pair to the port inside the pod and reports failures as text on the
// error stream.
import type { Logger } from "../log.js";
import { causeChain } from "../errors.js";
import { RstStatus } from "./spdy-frames.js";
import type { SpdySession, SpdyStream } from "./spdy.js";
import type { StreamRuntime } from "../runtime/stream-io.js";
import type { PortForwardRequest } from "./types.js";

export const SPDY_PORTFORWARD_PROTOCOLS = ["portforward.k8s.io"];

/** Parses a port header or query value: a decimal 1..65535, or undefined. */
export function parsePort(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9]{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  port?: string;
  timer: NodeJS.Timeout;
}

export interface PortForwardOptions {
  log: Logger;
  streamCreationTimeoutMs: number;
}

/** Serves one upgraded SPDY port-forward session until the client closes it. */
export function serveSpdyPortForward(session: SpdySession, req: PortForwardRequest, runtime: StreamRuntime, opts: PortForwardOptions): Promise<void> {
  const pairs = new Map<string, Pair>();
  const ac = new AbortController();
  const running = new Set<Promise<void>>();

  const forward = async (pair: Required<Omit<Pair, "timer">>) => {
    const port = parsePort(pair.port);
    try {
      if (port === undefined) throw new Error(`invalid port "${pair.port}": ports are 1..65535`);
      if (req.ports.length > 0 && !req.ports.includes(port)) {
        throw new Error(`port ${port} was not in the PortForward request (${req.ports.join(", ")})`);
      }
      await runtime.portForward(req.sandboxId, port, pair.data, ac.signal);
    } catch (err) {
      if (!ac.signal.aborted) {
        opts.log.debug({ sandbox: req.sandboxId, port: pair.port, err: causeChain(err) }, "port forward failed");
        pair.error.write(`error forwarding port ${pair.port} to pod ${req.sandboxId}: ${causeChain(err)}`);
      }
    }
    pair.error.end();
    pair.data.end();
  };

  session.on("stream", (stream: SpdyStream, headers: Map<string, string>) => {
    void stream.reply();
    const type = headers.get("streamtype");
    // Clients without requestID (pre-1.6) pair a data stream with the error stream just before it.
    const id = headers.get("requestid") ?? String(type === "error" ? stream.id : stream.id - 2);
    if (type !== "data" && type !== "error") {
      opts.log.debug({ type }, "port forward: unexpected stream type refused");
      stream.reset(RstStatus.REFUSED_STREAM);
      return;
    }
    let pair = pairs.get(id);
    if (!pair) {
      pair = {
        timer: setTimeout(() => {
          pairs.delete(id);
          pair!.data?.reset(RstStatus.CANCEL);
          pair!.error?.reset(RstStatus.CANCEL);
        }, opts.streamCreationTimeoutMs),
      };
      pairs.set(id, pair);
    }
    if (pair[type]) {
      stream.reset(RstStatus.PROTOCOL_ERROR);
      return;
    }
    pair[type] = stream;
    pair.port ??= headers.get("port");
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      pairs.delete(id);
      const p = forward({ data: pair.data, error: pair.error, port: pair.port ?? "" });
      running.add(p);
      void p.finally(() => running.delete(p));
    }
  });

  return new Promise((resolve) => {
    session.once("close", () => {
      ac.abort();
      for (const pair of pairs.values()) clearTimeout(pair.timer);
      pairs.clear();
      void Promise.all(running).then(() => resolve());
    });
  });
}
