// The one place a CRI call becomes a gRPC answer: logs the call (debug: method, duration,
// code; failures at warn with the cause chain) and maps thrown errors to a status.
import { BerthError, causeChain, codeOf, Unimplemented } from "../errors.js";
import type { ImageServiceService, RuntimeServiceService } from "../gen/api.js";
import type { ServerCall, ServiceHandlers, StreamCall, StreamHandler, UnaryCall, UnaryHandler } from "../grpc/server.js";
import { status, statusName } from "../grpc/status.js";
import type { Logger } from "../log.js";

/** Longest error message sent or logged: a check that quotes a 16 MiB field must not echo it whole. */
export const MAX_ERROR_MESSAGE = 4096;

export function capMessage(text: string): string {
  return text.length > MAX_ERROR_MESSAGE ? `${text.slice(0, MAX_ERROR_MESSAGE)}… (${text.length - MAX_ERROR_MESSAGE} more characters)` : text;
}

let callObserver: ((method: string) => void) | undefined;

/** Tells `fn` the name of every unary call once it has been answered (the daemon's idle-memory hook). */
export function observeCalls(fn: ((method: string) => void) | undefined): void {
  callObserver = fn;
}

/** One RPC's metrics sink, taken once per handler: recording a call allocates nothing. */
export interface RpcMethodRecorder {
  /** The call was answered with `code` (0: OK); `started` is its process.hrtime.bigint(). */
  done(code: number, started: bigint): void;
}

export interface RpcRecorder {
  method(name: string): RpcMethodRecorder;
}

let rpcRecorder: RpcRecorder | undefined;

/** Sets the metrics sink of every unary handler built after this call (the daemon sets it before building them). */
export function recordRpcs(r: RpcRecorder | undefined): void {
  rpcRecorder = r;
}

/**
 * A call the server ended before any handler ran (a request it could not read, too large, or past
 * its deadline while being read): logged, and counted in the RPC metrics like a handler's failure.
 */
export function rejected(log: Logger, method: string, code: number, message: string): void {
  log.warn({ method, code: statusName(code), err: capMessage(message) }, "rpc rejected");
  rpcRecorder?.method(method).done(code, process.hrtime.bigint());
}

export function unary<Req, Res>(log: Logger, method: string, fn: (req: Req, call: ServerCall<Req>) => Promise<Res>): UnaryHandler<Req, Res> {
  const rec = rpcRecorder?.method(method);
  return (call: UnaryCall<Req, Res>) => {
    const started = process.hrtime.bigint();
    fn(call.request, call).then(
      (res) => {
        call.reply(res);
        if (call.internal) return;
        if (log.isLevelEnabled("debug")) log.debug({ method, ms: elapsedMs(started), code: "OK" }, "rpc");
        rec?.done(0, started);
        callObserver?.(method);
      },
      (err: unknown) => {
        const code = codeOf(err);
        const message = capMessage(err instanceof BerthError ? err.message : causeChain(err));
        if (call.internal) {
          call.fail(code, message);
          return;
        }
        const level = code === status.INTERNAL || code === status.UNKNOWN ? "error" : code === status.UNIMPLEMENTED || code === status.NOT_FOUND ? "debug" : "warn";
        log[level]({ method, ms: elapsedMs(started), code: statusName(code), err: capMessage(causeChain(err)) }, "rpc failed");
        call.fail(code, message);
        rec?.done(code, started);
        callObserver?.(method);
      },
    );
  };
}

export function serverStream<Req, Res>(log: Logger, method: string, fn: (req: Req, call: StreamCall<Req, Res>) => Promise<void>): StreamHandler<Req, Res> {
  return (call: StreamCall<Req, Res>) => {
    fn(call.request, call).then(
      () => call.end(),
      (err: unknown) => {
        const code = codeOf(err);
        const message = capMessage(causeChain(err));
        log.warn({ method, code: statusName(code), err: message }, "stream failed");
        // The status goes in the trailers, after the messages already written.
        call.fail(code, message);
      },
    );
  };
}

/** Aborted when the caller is gone (cancelled, deadline passed): for work that must outlive it and know it. */
export function callerGone(call: { cancelled: boolean; once(event: "cancelled", fn: () => void): unknown }): AbortSignal {
  const gone = new AbortController();
  if (call.cancelled) gone.abort();
  else call.once("cancelled", () => gone.abort());
  return gone.signal;
}

function elapsedMs(started: bigint): number {
  return Number((process.hrtime.bigint() - started) / 1000n) / 1000;
}

/** A handler for an RPC whose issue has not landed: UNIMPLEMENTED naming the RPC. */
export function unimplemented(log: Logger, service: string, method: string): UnaryHandler<unknown, unknown> {
  return unary(log, method, async () => {
    throw new Unimplemented(`${service}.${method} is not implemented by berth yet`);
  });
}

/** The handler of each RuntimeService RPC, typed from the generated definition (grpc/server.ts). */
export type RuntimeHandlers = ServiceHandlers<typeof RuntimeServiceService>;
/** The handler of each ImageService RPC. */
export type ImageHandlers = ServiceHandlers<typeof ImageServiceService>;
