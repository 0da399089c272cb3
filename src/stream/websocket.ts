// Kubernetes streaming over WebSocket: every message carries a channel number (a leading
// byte, or a leading digit and base64 text in the base64 protocols). Remote command uses
// channels stdin 0, stdout 1, stderr 2, error 3, resize 4; v5 adds a close signal
// (channel 255, then the channel to close). Port forward uses, per requested port, a data
// channel 2i and an error channel 2i+1, each opened by the port as little-endian uint16.
import { Duplex } from "node:stream";
import type { WebSocket } from "ws";
import type { Logger } from "../log.js";
import { causeChain } from "../errors.js";
import { encodeStatus, finish, initialSize, ResizeDecoder, runRemoteCommand } from "./remotecommand.js";
import { TerminalResizes, type StreamIO, type StreamRuntime } from "../runtime/stream-io.js";
import type { AttachRequest, ExecRequest, PortForwardRequest } from "./types.js";

interface WsProtocol {
  base64: boolean;
  closeSignal: boolean;
}

/** Remote command subprotocols over WebSocket ("" is a client that names none). */
export const WS_REMOTECOMMAND_PROTOCOLS: Record<string, WsProtocol> = {
  "v5.channel.k8s.io": { base64: false, closeSignal: true },
  "v4.channel.k8s.io": { base64: false, closeSignal: false },
  "v4.base64.channel.k8s.io": { base64: true, closeSignal: false },
  "channel.k8s.io": { base64: false, closeSignal: false },
  "base64.channel.k8s.io": { base64: true, closeSignal: false },
  "": { base64: false, closeSignal: false },
};

export const WS_PORTFORWARD_PROTOCOLS: Record<string, WsProtocol> = {
  "v4.channel.k8s.io": { base64: false, closeSignal: false },
  "v4.base64.channel.k8s.io": { base64: true, closeSignal: false },
  "": { base64: false, closeSignal: false },
};

/** The first protocol the client offers that the server knows, "" when it offers none, undefined when none fits. */
export function chooseProtocol(offered: string[], known: Record<string, WsProtocol>): string | undefined {
  if (offered.length === 0) return "";
  return offered.find((p) => p !== "" && p in known);
}

const CLOSE_SIGNAL = 255;

/** One WebSocket connection split into channel streams. */
class Channels {
  private readonly readers = new Map<number, Duplex>();
  private readonly paused = new Set<number>();

  constructor(private readonly ws: WebSocket, private readonly proto: WsProtocol, private readonly log: Logger) {
    ws.on("message", (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    let channel: number;
    let payload: Buffer;
    if (this.proto.base64) {
      if (isBinary || data.length === 0) return;
      channel = data[0]! - 0x30;
      payload = Buffer.from(data.subarray(1).toString("latin1"), "base64");
    } else {
      if (data.length === 0) return;
      channel = data[0]!;
      payload = data.subarray(1);
    }
    if (channel === CLOSE_SIGNAL && this.proto.closeSignal) {
      if (payload.length > 0) this.readers.get(payload[0]!)?.push(null);
      return;
    }
    const r = this.readers.get(channel);
    if (!r || r.readableEnded || payload.length === 0) return;
    if (!r.push(payload)) {
      this.paused.add(channel);
      this.ws.pause();
    }
  }

  /** A channel stream: readable when the client may send on it, writable when the server may. */
  open(channel: number, readable: boolean): Duplex {
    const self = this;
    const d = new Duplex({
      allowHalfOpen: true,
      read() {
        if (self.paused.delete(channel) && self.paused.size === 0) self.ws.resume();
      },
      write(chunk: Buffer, _enc, cb) {
        self.send(channel, chunk, cb);
      },
      final(cb) {
        cb();
      },
    });
    d.on("error", (err) => this.log.debug({ channel, err: err.message }, "websocket channel error"));
    if (readable) this.readers.set(channel, d);
    else d.push(null);
    return d;
  }

  send(channel: number, data: Buffer, cb?: (err?: Error) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      cb?.(new Error("websocket is closed"));
      return;
    }
    if (this.proto.base64) this.ws.send(String.fromCharCode(0x30 + channel) + data.toString("base64"), { binary: false }, cb);
    else this.ws.send(Buffer.concat([Buffer.of(channel), data]), { binary: true }, cb);
  }

  endAll(): void {
    for (const r of this.readers.values()) if (!r.readableEnded) r.push(null);
  }
}

function closeSocket(ws: WebSocket): void {
  if (ws.readyState === ws.OPEN) ws.close(1000);
  // A client that never answers the close handshake must not keep the connection.
  setTimeout(() => ws.terminate(), 5000).unref();
}

/** Serves exec/attach over an accepted WebSocket; resolves when everything is released. */
export async function serveWsRemoteCommand(ws: WebSocket, protocol: string, req: ExecRequest | AttachRequest, runtime: StreamRuntime, log: Logger): Promise<void> {
  const proto = WS_REMOTECOMMAND_PROTOCOLS[protocol]!;
  const ch = new Channels(ws, proto, log);
  const ac = new AbortController();
  ws.once("close", () => {
    ch.endAll();
    ac.abort();
  });
  const stdin = req.stdin ? ch.open(0, true) : undefined;
  const stdout = req.stdout ? ch.open(1, false) : undefined;
  const stderr = req.stderr && !req.tty ? ch.open(2, false) : undefined;
  const resize = new TerminalResizes();
  if (req.tty) {
    const decoder = new ResizeDecoder();
    ch.open(4, true).on("data", (d: Buffer) => {
      try {
        for (const size of decoder.push(d)) resize.push(size);
      } catch (err) {
        log.debug({ err: (err as Error).message }, "bad resize message ignored");
      }
    });
  }
  // Tells the client the streams are ready: an empty message on the lowest writable channel.
  ch.send(stdout ? 1 : stderr ? 2 : 3, Buffer.alloc(0));
  if (req.tty) await initialSize(resize);
  if (ac.signal.aborted) return;
  const io: StreamIO = { tty: req.tty, stdin, stdout, stderr, resize, signal: ac.signal };
  const status = await runRemoteCommand(runtime, req, io, log);
  if (!ac.signal.aborted) {
    await Promise.all([stdout, stderr].map((w) => (w ? finish(w) : undefined)));
    const bytes = encodeStatus(protocol, status);
    if (bytes.length > 0) await new Promise<void>((resolve) => ch.send(3, bytes, () => resolve()));
  }
  closeSocket(ws);
}

/** Serves port forwarding over an accepted WebSocket: one connection per requested port. */
export async function serveWsPortForward(ws: WebSocket, protocol: string, req: PortForwardRequest, runtime: StreamRuntime, log: Logger): Promise<void> {
  const ch = new Channels(ws, WS_PORTFORWARD_PROTOCOLS[protocol]!, log);
  const ac = new AbortController();
  ws.once("close", () => {
    ch.endAll();
    ac.abort();
  });
  await Promise.all(req.ports.map(async (port, i) => {
    const data = ch.open(2 * i, true);
    const portBytes = Buffer.alloc(2);
    portBytes.writeUInt16LE(port);
    ch.send(2 * i, portBytes);
    ch.send(2 * i + 1, portBytes);
    try {
      await runtime.portForward(req.sandboxId, port, data, ac.signal);
    } catch (err) {
      if (!ac.signal.aborted) ch.send(2 * i + 1, Buffer.from(`error forwarding port ${port} to pod ${req.sandboxId}: ${causeChain(err)}`));
    }
  }));
  closeSocket(ws);
}
