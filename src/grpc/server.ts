// berth's gRPC server: unary and server-streaming calls over berth's own HTTP/2 (h2.ts, h2c),
// fed the connections berth's own listener accepts. What it speaks is the gRPC HTTP/2 protocol
// (grpc/doc/PROTOCOL-HTTP2.md): POST with content-type application/grpc, messages with a 5-byte
// prefix (compressed flag, big-endian length), the status in trailers, or in the only headers
// (trailers-only) when a call fails before its first message. Requests may come gzip/deflate
// compressed; responses never are. Handlers get one small Call object per call, which is also
// what the HTTP/2 stream reports to (its sink): a call allocates no closures here. A unary answer
// (headers, message, trailers) leaves in one socket write.
import type { Socket } from "node:net";
import zlib from "node:zlib";
import { H2Connection, type H2Stream, type RequestHandler, type StreamSink } from "./h2.js";
import { indexed, literal, STATIC_CONTENT_TYPE, STATIC_STATUS } from "./hpack.js";
import { status } from "./status.js";

/** Largest request message accepted (grpc-js's default max_receive_message_length is 4 MiB; berth took 16). */
export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Longest grpc-message sent: longer ones are cut. */
const MAX_STATUS_MESSAGE = 8192;

/** What the handlers of one call see. */
export interface ServerCall<Req> {
  readonly request: Req;
  /** The caller is gone: cancelled, reset the stream, or its deadline passed. */
  readonly cancelled: boolean;
  /** berthd called itself (the start-up warm-up, warmup.ts): not logged, not counted. */
  readonly internal: boolean;
  once(event: "cancelled" | "drain", fn: () => void): void;
  off(event: "cancelled" | "drain", fn: () => void): void;
  /** Ends the call with a status other than OK. */
  fail(code: number, message: string): void;
}

export interface UnaryCall<Req, Res> extends ServerCall<Req> {
  /** Ends the call with its one response and status OK. */
  reply(res: Res): void;
}

export interface StreamCall<Req, Res> extends ServerCall<Req> {
  /** Sends the response headers now (they go with the first message otherwise). */
  sendHeaders(): void;
  /** Queues `msg`; `cb` runs once the transport took it. false: wait for "drain" before writing more. */
  write(msg: Res, cb?: (err?: Error | null) => void): boolean;
  /** Ends the call with status OK after the messages written. */
  end(): void;
}

export type UnaryHandler<Req, Res> = (call: UnaryCall<Req, Res>) => void;
export type StreamHandler<Req, Res> = (call: StreamCall<Req, Res>) => void;

/** One method of a generated service definition (ts-proto's outputServices=grpc-js). */
export interface MethodDefinition {
  path: string;
  responseStream: boolean;
  requestDeserialize: (b: Buffer) => unknown;
  responseSerialize: (v: never) => Buffer;
}

type RequestOf<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
type ResponseOf<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

/** The handler of every method of a generated service definition, typed from it. */
export type ServiceHandlers<D> = {
  [K in keyof D]: D[K] extends { responseStream: true } ? StreamHandler<RequestOf<D[K]>, ResponseOf<D[K]>> : UnaryHandler<RequestOf<D[K]>, ResponseOf<D[K]>>;
};

/** One routed method: how its messages are read and written, and who answers it. */
export interface Method {
  /** "Version": the name used in messages. */
  name: string;
  stream: boolean;
  decode: (b: Buffer) => unknown;
  encode: (v: never) => Buffer;
  handler: (call: Call) => void;
}

// The header blocks every call shares (HPACK, built once).
const CONTENT_TYPE = literal(STATIC_CONTENT_TYPE, "application/grpc");
const RESPONSE_HEADERS = Buffer.concat([indexed(STATIC_STATUS), CONTENT_TYPE]);
const OK_STATUS = literal("grpc-status", "0");
const OK_TRAILERS_ONLY = Buffer.concat([RESPONSE_HEADERS, OK_STATUS]);
const IDENTITY = "identity";

// A call's state: reading its request, handled (waiting for the handler), headers sent, over.
const READING = 0;
const HANDLING = 1;
const STREAMING = 2;
const DONE = 3;

/** Percent-encodes what the gRPC spec asks for in grpc-message: "%" and bytes outside 0x20-0x7E. */
export function encodeStatusMessage(message: string): string {
  if (message.length > MAX_STATUS_MESSAGE) message = `${message.slice(0, MAX_STATUS_MESSAGE)}…`;
  // eslint-disable-next-line no-control-regex
  if (!/[^\x20-\x24\x26-\x7e]/.test(message)) return message;
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte < 16 ? "0" : ""}${byte.toString(16).toUpperCase()}`;
  }
  return out;
}

/** The trailing header block of a call ending with `code`. */
function statusTrailers(code: number, message: string): Buffer {
  return Buffer.concat([literal("grpc-status", String(code)), literal("grpc-message", encodeStatusMessage(message))]);
}

/** A trailers-only response: the status is the response's only header block. */
function trailersOnly(code: number, message: string, httpStatus = 200, extra?: Buffer): Buffer {
  const statusField = httpStatus === 200 ? indexed(STATIC_STATUS) : literal(STATIC_STATUS, String(httpStatus));
  return Buffer.concat([statusField, CONTENT_TYPE, statusTrailers(code, message), ...(extra ? [extra] : [])]);
}

/** grpc-timeout ("<digits><unit>", unit one of H M S m u n) in milliseconds, or undefined when malformed. */
export function parseTimeout(value: string): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case "H": return n * 3_600_000;
    case "M": return n * 60_000;
    case "S": return n * 1000;
    case "m": return n;
    case "u": return n / 1000;
    default: return n / 1_000_000;
  }
}

/** One call: the request being read, then the handler's view of it. */
export class Call implements UnaryCall<unknown, unknown>, StreamCall<unknown, unknown>, StreamSink {
  request: unknown = undefined;
  cancelled = false;
  private state = READING;
  private chunk: Buffer | undefined;
  private chunks: Buffer[] | undefined;
  private received = 0;
  private timer: NodeJS.Timeout | undefined;
  private onCancel: (() => void)[] | undefined;

  constructor(readonly method: Method, private readonly stream: H2Stream, readonly server: GrpcServer, readonly encoding: string | undefined) {}

  get internal(): boolean {
    return this.stream.internal;
  }

  once(event: "cancelled" | "drain", fn: () => void): void {
    if (event === "drain") this.stream.onDrain(fn);
    else (this.onCancel ??= []).push(fn);
  }

  off(event: "cancelled" | "drain", fn: () => void): void {
    if (event === "drain") this.stream.offDrain(fn);
    else if (this.onCancel) {
      const i = this.onCancel.indexOf(fn);
      if (i >= 0) this.onCancel.splice(i, 1);
    }
  }

  /** @internal request bytes as they come */
  take(data: Buffer): void {
    if (this.state !== READING) return;
    this.received += data.length;
    if (this.received > MAX_REQUEST_BYTES + 5) {
      this.fail(status.RESOURCE_EXHAUSTED, `${this.method.name}: the request is larger than the ${MAX_REQUEST_BYTES} bytes allowed`);
      return;
    }
    if (this.chunk === undefined) this.chunk = data;
    else (this.chunks ??= [this.chunk]).push(data);
  }

  /** @internal the request is complete: decode it, hand the call over */
  ended(): void {
    if (this.state !== READING) return;
    const body = this.chunks ? Buffer.concat(this.chunks) : this.chunk;
    this.chunk = this.chunks = undefined;
    if (body === undefined || body.length < 5) {
      this.fail(status.INTERNAL, `${this.method.name}: the request has no complete message`);
      return;
    }
    const length = body.readUInt32BE(1);
    if (length > MAX_REQUEST_BYTES) {
      this.fail(status.RESOURCE_EXHAUSTED, `${this.method.name}: the request is larger than the ${MAX_REQUEST_BYTES} bytes allowed`);
      return;
    }
    if (body.length !== 5 + length) {
      this.fail(status.INTERNAL, `${this.method.name}: a unary request carries exactly one message (${body.length} bytes for a message of ${length})`);
      return;
    }
    const payload = body.subarray(5);
    if (body[0] === 0) {
      this.decoded(payload);
      return;
    }
    if (body[0] !== 1 || this.encoding === undefined || this.encoding === IDENTITY) {
      this.fail(status.INTERNAL, `${this.method.name}: the request is flagged compressed without a grpc-encoding`);
      return;
    }
    this.state = HANDLING;
    const inflate = this.encoding === "gzip" ? zlib.gunzip : zlib.inflate;
    inflate(payload, { maxOutputLength: MAX_REQUEST_BYTES }, (err, out) => {
      if (this.state === DONE) return;
      this.state = READING;
      if (!err) this.decoded(out);
      else if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") this.fail(status.RESOURCE_EXHAUSTED, `${this.method.name}: the request is larger than the ${MAX_REQUEST_BYTES} bytes allowed once decompressed`);
      else this.fail(status.INTERNAL, `${this.method.name}: the ${this.encoding} request could not be decompressed: ${err.message}`);
    });
  }

  private decoded(payload: Buffer): void {
    try {
      this.request = this.method.decode(payload);
    } catch (err) {
      this.fail(status.INVALID_ARGUMENT, `${this.method.name}: the request is not a valid protobuf message: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    this.state = HANDLING;
    try {
      this.method.handler(this);
    } catch (err) {
      this.fail(status.INTERNAL, `${this.method.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** @internal the timer set from grpc-timeout fired */
  expired(): void {
    this.timer = undefined;
    if (this.state === DONE) return;
    this.fail(status.DEADLINE_EXCEEDED, "Deadline exceeded");
    this.cancel();
  }

  /** @internal */
  setDeadline(ms: number): void {
    // Past setTimeout's range (about 24.8 days) node would fire at once: such a deadline is none.
    if (ms <= MAX_TIMER_MS) this.timer = setTimeout(expire, ms, this);
  }

  /** @internal the stream closed: the caller is gone unless the call was over */
  closed(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const wasDone = this.state === DONE;
    this.state = DONE;
    this.server.callEnded();
    if (!wasDone) this.cancel();
  }

  private cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const fns = this.onCancel;
    this.onCancel = undefined;
    if (fns) for (const fn of fns) fn();
  }

  private frame(msg: unknown): Buffer {
    const payload = this.method.encode(msg as never);
    const out = Buffer.allocUnsafe(5 + payload.length);
    out[0] = 0;
    out.writeUInt32BE(payload.length, 1);
    payload.copy(out, 5);
    return out;
  }

  reply(res: unknown): void {
    if (this.state !== HANDLING) return;
    let data: Buffer;
    try {
      data = this.frame(res);
    } catch (err) {
      this.fail(status.INTERNAL, `${this.method.name}: the response could not be encoded: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    this.finish();
    const s = this.stream;
    if (s.destroyed) return;
    s.respond(RESPONSE_HEADERS, false);
    s.write(data);
    s.end(OK_STATUS);
  }

  fail(code: number, message: string): void {
    if (this.state === DONE) return;
    if (this.state === READING) this.server.onRejected?.(this.method.name, code, message);
    const s = this.stream;
    if (this.state === STREAMING) {
      this.finish();
      s.end(statusTrailers(code, message));
      return;
    }
    this.finish();
    s.respond(trailersOnly(code, message), true);
  }

  sendHeaders(): void {
    if (this.state !== HANDLING) return;
    this.state = STREAMING;
    this.stream.respond(RESPONSE_HEADERS, false);
  }

  write(msg: unknown, cb?: (err?: Error | null) => void): boolean {
    if (this.state === HANDLING) this.sendHeaders();
    if (this.state !== STREAMING || this.stream.destroyed) {
      if (cb) process.nextTick(cb);
      return true;
    }
    return this.stream.write(this.frame(msg), cb);
  }

  end(): void {
    if (this.state === HANDLING) {
      this.finish();
      this.stream.respond(OK_TRAILERS_ONLY, true);
    } else if (this.state === STREAMING) {
      this.finish();
      this.stream.end(OK_STATUS);
    }
  }

  private finish(): void {
    this.state = DONE;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function expire(call: Call): void {
  call.expired();
}

/** Answers a stream that reaches no handler (trailers-only) and drops what it sends. */
function refuse(stream: H2Stream, httpStatus: number, code: number, message: string, extra?: Buffer): void {
  stream.respond(trailersOnly(code, message, httpStatus, extra), true);
}

const ACCEPT_ENCODING = literal("grpc-accept-encoding", "identity,deflate,gzip");

/** The service definitions' methods, by path. */
export function methodTable(services: { service: string; definition: Record<string, MethodDefinition>; handlers: Record<string, (call: Call) => void> }[]): Map<string, Method> {
  const table = new Map<string, Method>();
  for (const { definition, handlers } of services) {
    for (const [key, def] of Object.entries(definition)) {
      const handler = handlers[key];
      if (!handler) continue;
      table.set(def.path, { name: def.path.slice(def.path.lastIndexOf("/") + 1), stream: def.responseStream, decode: def.requestDeserialize, encode: def.responseSerialize, handler });
    }
  }
  return table;
}

export class GrpcServer implements RequestHandler {
  private readonly conns = new Set<H2Connection>();
  private open = 0;
  private stopping = false;
  private onIdle: (() => void) | undefined;
  private readonly connClosed = (c: H2Connection) => {
    this.conns.delete(c);
    this.checkIdle();
  };

  /**
   * `onRejected` hears of the calls the server ends before any handler ran (a request it could not
   * read, too large, or past its deadline while being read).
   */
  constructor(private readonly methods: Map<string, Method>, readonly onRejected?: (method: string, code: number, message: string) => void) {}

  /** Serves one accepted connection; `internal`: one berthd opened to itself (warmup.ts). */
  serve(socket: Socket, internal = false): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    this.conns.add(new H2Connection(socket, this, this.connClosed, internal));
  }

  /** @internal a request's headers came */
  stream(stream: H2Stream, headers: Record<string, string>): void {
    const path = headers[":path"];
    const method = path === undefined ? undefined : this.methods.get(path);
    if (method === undefined) {
      refuse(stream, 200, status.UNIMPLEMENTED, `unknown method ${String(path)}`);
      return;
    }
    if (headers[":method"] !== "POST") {
      refuse(stream, 405, status.INTERNAL, `gRPC calls are POST, not ${String(headers[":method"])}`);
      return;
    }
    const type = headers["content-type"];
    if (type === undefined || !(type === "application/grpc" || type.startsWith("application/grpc+") || type.startsWith("application/grpc;"))) {
      refuse(stream, 415, status.INTERNAL, `content-type ${String(type)} is not application/grpc`);
      return;
    }
    let encoding: string | undefined = headers["grpc-encoding"];
    if (encoding === IDENTITY) encoding = undefined;
    if (encoding !== undefined && encoding !== "gzip" && encoding !== "deflate") {
      refuse(stream, 200, status.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported`, ACCEPT_ENCODING);
      return;
    }
    const call = new Call(method, stream, this, encoding);
    stream.sink = call;
    this.open++;
    const timeout = headers["grpc-timeout"];
    if (timeout !== undefined) {
      const ms = parseTimeout(timeout);
      if (ms !== undefined) call.setDeadline(ms);
    }
  }

  /** @internal */
  callEnded(): void {
    this.open--;
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.onIdle && this.conns.size === 0) {
      const fn = this.onIdle;
      this.onIdle = undefined;
      fn();
    }
  }

  /** Calls open now. */
  get openCalls(): number {
    return this.open;
  }

  /** Takes no new connection, tells each client (GOAWAY) to start no new call, and calls `done` once the open ones have ended. */
  tryShutdown(done: () => void): void {
    this.stopping = true;
    this.onIdle = done;
    for (const c of this.conns) c.goAway();
    this.checkIdle();
  }

  /** Ends every connection now: open calls are cancelled. */
  forceShutdown(): void {
    this.stopping = true;
    for (const c of [...this.conns]) c.destroy();
  }
}
