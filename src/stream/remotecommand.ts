// Kubernetes remote command (exec and attach) over SPDY: the channel.k8s.io family of
// subprotocols, the streams they open, the status they report, and the run itself.
import type { Logger } from "../log.js";
import { causeChain } from "../errors.js";
import type { SpdySession, SpdyStream } from "./spdy.js";
import { RstStatus } from "./spdy-frames.js";
import { TerminalResizes, type StreamIO, type StreamRuntime, type TerminalSize } from "../runtime/stream-io.js";
import type { AttachRequest, ExecRequest } from "./types.js";

/** SPDY remote command subprotocols, newest first. */
export const SPDY_REMOTECOMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/** Protocols whose error stream carries a v1 Status JSON (older ones carry the message text). */
export function statusIsJson(protocol: string): boolean {
  return protocol === "v4.channel.k8s.io" || protocol === "v5.channel.k8s.io" || protocol === "v4.base64.channel.k8s.io";
}

/** Protocols with a resize stream (SPDY v3+; every WebSocket protocol has the channel). */
export function spdySupportsResize(protocol: string): boolean {
  return protocol === "v4.channel.k8s.io" || protocol === "v3.channel.k8s.io";
}

/** metav1.Status as the error stream carries it. */
export interface Status {
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: { causes: Array<{ reason?: string; message: string }> };
  code?: number;
}

export const SUCCESS: Status = { status: "Success" };

export function nonZeroExit(cmd: string[], exitCode: number): Status {
  return {
    status: "Failure",
    message: `command terminated with non-zero exit code: error executing command [${cmd.join(" ")}], exit code ${exitCode}`,
    reason: "NonZeroExitCode",
    details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
  };
}

export function internalError(message: string): Status {
  return {
    status: "Failure",
    message: `Internal error occurred: ${message}`,
    reason: "InternalError",
    details: { causes: [{ message }] },
    code: 500,
  };
}

/** The bytes the error stream gets for a status; empty for Success under the pre-v4 protocols. */
export function encodeStatus(protocol: string, s: Status): Buffer {
  if (statusIsJson(protocol)) {
    const { status, message, reason, details, code } = s;
    return Buffer.from(JSON.stringify({ metadata: {}, status, message, reason, details, code }));
  }
  return Buffer.from(s.status === "Success" ? "" : s.message ?? "");
}

/**
 * Splits a byte stream of concatenated JSON objects ({"Width":80,"Height":24}{"Width":...})
 * into terminal sizes. Malformed input throws.
 */
export class ResizeDecoder {
  private buf = "";
  private depth = 0;
  private inString = false;
  private escaped = false;

  push(chunk: Buffer | string): TerminalSize[] {
    const out: TerminalSize[] = [];
    const text = typeof chunk === "string" ? chunk : chunk.toString("utf8");
    for (const ch of text) {
      if (this.depth === 0 && /\s/.test(ch)) continue;
      if (this.depth === 0 && ch !== "{") throw new Error(`resize stream: expected a JSON object, got ${JSON.stringify(ch)}`);
      this.buf += ch;
      if (this.buf.length > 4096) throw new Error("resize stream: message longer than 4096 bytes");
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === "\\") this.escaped = true;
        else if (ch === "\"") this.inString = false;
        continue;
      }
      if (ch === "\"") this.inString = true;
      else if (ch === "{") this.depth++;
      else if (ch === "}") {
        this.depth--;
        if (this.depth === 0) {
          out.push(parseSize(this.buf));
          this.buf = "";
        }
      }
    }
    return out;
  }
}

function parseSize(text: string): TerminalSize {
  const v = JSON.parse(text) as { Width?: unknown; Height?: unknown };
  const ok = (n: unknown) => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 65535;
  if (!ok(v.Width) || !ok(v.Height)) throw new Error(`resize stream: ${text} is not {"Width":<0..65535>,"Height":<0..65535>}`);
  return { width: v.Width as number, height: v.Height as number };
}

export interface RemoteCommandOptions {
  log: Logger;
  /** How long the client has to open every stream it needs. */
  streamCreationTimeoutMs: number;
}

/** Runs exec or attach against the runtime with io; returns the status to report. Never throws. */
export async function runRemoteCommand(runtime: StreamRuntime, req: ExecRequest | AttachRequest, io: StreamIO, log: Logger): Promise<Status> {
  try {
    if (req.kind === "exec") {
      const { exitCode } = await runtime.exec(req.containerId, req.cmd, io);
      return exitCode === 0 ? SUCCESS : nonZeroExit(req.cmd, exitCode);
    }
    await runtime.attach(req.containerId, io);
    return SUCCESS;
  } catch (err) {
    const what = req.kind === "exec" ? "error executing command in container" : "error attaching to container";
    log.warn({ container: req.containerId, err: causeChain(err) }, what);
    return internalError(`${what}: ${causeChain(err)}`);
  }
}

/**
 * Waits (briefly) for the client's first terminal size: clients send it right after opening
 * the streams, and a command started before it would see a 0x0 terminal.
 */
export function initialSize(resize: TerminalResizes, ms = 1000): Promise<void> {
  if (resize.latest) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      resize.off("resize", done);
      resolve();
    }
    resize.once("resize", done);
  });
}

/** Ends a writable side and waits until its data has been handed to the connection. */
export function finish(w: NodeJS.WritableStream & { writableFinished?: boolean; destroyed?: boolean }): Promise<void> {
  return new Promise((resolve) => {
    if (w.destroyed || w.writableFinished) return resolve();
    const done = () => resolve();
    w.once("finish", done);
    w.once("close", done);
    w.once("error", done);
    w.end();
  });
}

/** Serves one exec/attach over an upgraded SPDY session; resolves when everything is released. */
export async function serveSpdyRemoteCommand(session: SpdySession, protocol: string, req: ExecRequest | AttachRequest, runtime: StreamRuntime, opts: RemoteCommandOptions): Promise<void> {
  const wanted = new Set<string>(["error"]);
  if (req.stdin) wanted.add("stdin");
  if (req.stdout) wanted.add("stdout");
  if (req.stderr && !req.tty) wanted.add("stderr");
  if (req.tty && spdySupportsResize(protocol)) wanted.add("resize");
  const streams = new Map<string, SpdyStream>();
  const ac = new AbortController();
  session.once("close", () => ac.abort());

  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      opts.log.debug({ got: [...streams.keys()], wanted: [...wanted] }, "client did not create its streams in time");
      resolve(false);
    }, opts.streamCreationTimeoutMs);
    session.once("close", () => {
      clearTimeout(timer);
      resolve(false);
    });
    session.on("stream", (stream: SpdyStream, headers: Map<string, string>) => {
      const type = headers.get("streamtype") ?? "";
      void stream.reply();
      if (!wanted.has(type) || streams.has(type)) {
        opts.log.debug({ type }, "unexpected stream refused");
        stream.reset(RstStatus.REFUSED_STREAM);
        return;
      }
      streams.set(type, stream);
      if (streams.size === wanted.size) {
        clearTimeout(timer);
        resolve(true);
      }
    });
  });
  if (!ready) {
    session.close();
    return;
  }

  const resize = new TerminalResizes();
  const resizeStream = streams.get("resize");
  if (resizeStream) {
    const decoder = new ResizeDecoder();
    resizeStream.on("data", (d: Buffer) => {
      try {
        for (const size of decoder.push(d)) resize.push(size);
      } catch (err) {
        opts.log.debug({ err: (err as Error).message }, "bad resize message: resize stream reset");
        resizeStream.reset(RstStatus.PROTOCOL_ERROR);
      }
    });
  }
  if (resizeStream) await initialSize(resize);
  if (ac.signal.aborted) return;
  const io: StreamIO = {
    tty: req.tty,
    stdin: streams.get("stdin"),
    stdout: streams.get("stdout"),
    stderr: streams.get("stderr"),
    resize,
    signal: ac.signal,
  };
  const status = await runRemoteCommand(runtime, req, io, opts.log);
  if (!session.closed) {
    await Promise.all([io.stdout, io.stderr].map((w) => (w ? finish(w) : undefined)));
    const errorStream = streams.get("error")!;
    const bytes = encodeStatus(protocol, status);
    if (bytes.length > 0) errorStream.write(bytes);
    await finish(errorStream);
  }
  session.close();
}
