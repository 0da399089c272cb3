// berth's gRPC server against the real grpc-js client (and a raw node:http2 client where grpc-js
// would hide what the server sent), over a unix socket.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { ListContainersResponse, RuntimeServiceService, VersionRequest, VersionResponse } from "../gen/api.js";
import { GrpcServer, methodTable, parseTimeout, encodeStatusMessage, type Call, type StreamCall, type UnaryCall } from "./server.js";
import { status } from "./status.js";

const VERSION = "/runtime.v1.RuntimeService/Version";
const STATUS = "/runtime.v1.RuntimeService/Status";
const RUN_POD = "/runtime.v1.RuntimeService/RunPodSandbox";
const STREAM = "/runtime.v1.RuntimeService/StreamContainers";

const raw = (b: Buffer) => b;
const encodeVersion = (v: { version?: string }) => Buffer.from(VersionRequest.encode(VersionRequest.fromPartial(v)).finish());
const decodeVersion = (b: Buffer) => VersionResponse.decode(b);

describe("GrpcServer", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "berth-grpc-"));
  const socket = path.join(dir, "grpc.sock");
  let listener: net.Server;
  let server: GrpcServer;
  let client: Client;
  const seen = { encoding: undefined as string | undefined, cancelled: 0, slowStarted: 0 };
  let stalled: (() => void) | undefined;
  let streamCancelled: Promise<void> = Promise.resolve();

  const handlers: Record<string, (call: Call) => void> = {
    version: (call: UnaryCall<unknown, unknown>) => {
      const req = call.request as VersionRequest;
      seen.encoding = (call as Call).encoding;
      if (req.version === "slow") {
        seen.slowStarted++;
        setTimeout(() => call.reply({ version: "0.1.0", runtimeName: "slow", runtimeVersion: "", runtimeApiVersion: "" }), 300);
        return;
      }
      call.reply({ version: "0.1.0", runtimeName: `echo:${req.version.length > 64 ? req.version.length : req.version}`, runtimeVersion: "1", runtimeApiVersion: "v1" });
    },
    status: (call: UnaryCall<unknown, unknown>) => call.fail(status.NOT_FOUND, "pod \"a/b\" 100% gone: ünïcode\nline two"),
    runPodSandbox: (call: UnaryCall<unknown, unknown>) => {
      // Never answers: the deadline ends it.
      call.once("cancelled", () => {
        seen.cancelled++;
        stalled?.();
      });
    },
    streamContainers: (call: StreamCall<unknown, unknown>) => {
      const req = call.request as { filter?: { id: string } };
      if (req.filter?.id === "hold") {
        call.write({ containers: [] });
        streamCancelled = new Promise((resolve) => call.once("cancelled", resolve));
        return;
      }
      let n = 0;
      const next = () => {
        if (n === 3) {
          call.fail(status.FAILED_PRECONDITION, "stopped after three");
          return;
        }
        n++;
        call.write({ containers: [{ id: `c${n}`, podSandboxId: "p", imageRef: "", imageId: "", state: 0, createdAt: 0n, labels: {}, annotations: {} }] }, next);
      };
      next();
    },
  };

  before(async () => {
    server = new GrpcServer(methodTable([{ service: "RuntimeService", definition: RuntimeServiceService, handlers }]));
    listener = net.createServer((c) => server.serve(c));
    await new Promise<void>((resolve) => listener.listen(socket, resolve));
    client = new Client(`unix://${socket}`, credentials.createInsecure(), { "grpc.max_send_message_length": 64 << 20 });
  });
  after(() => {
    client.close();
    listener.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  function unaryCall<T>(c: Client, p: string, ser: (v: never) => Buffer, de: (b: Buffer) => T, arg: unknown, deadlineMs?: number): Promise<T> {
    return new Promise((resolve, reject) =>
      c.makeUnaryRequest(p, ser, de, arg as never, new Metadata(), { deadline: deadlineMs ? Date.now() + deadlineMs : Infinity }, (err, res) => (err ? reject(err) : resolve(res!))));
  }

  test("a unary call is answered", async () => {
    const res = await unaryCall(client, VERSION, encodeVersion, decodeVersion, { version: "v1" });
    assert.equal(res.runtimeName, "echo:v1");
    assert.equal(seen.encoding, undefined);
  });

  test("a failed call carries its status and message (percent-encoded on the wire)", async () => {
    const err = await unaryCall(client, STATUS, raw, raw, Buffer.alloc(0)).then(() => assert.fail("no error"), (e: ServiceError) => e);
    assert.equal(err.code, status.NOT_FOUND);
    assert.equal(err.details, "pod \"a/b\" 100% gone: ünïcode\nline two");
    assert.equal(encodeStatusMessage("a%b\n"), "a%25b%0A");
  });

  test("an unknown method is UNIMPLEMENTED", async () => {
    const err = await unaryCall(client, "/runtime.v1.RuntimeService/NoSuchThing", raw, raw, Buffer.alloc(0)).then(() => assert.fail("no error"), (e: ServiceError) => e);
    assert.equal(err.code, status.UNIMPLEMENTED);
    const err2 = await unaryCall(client, "/other.Service/Version", raw, raw, Buffer.alloc(0)).then(() => assert.fail("no error"), (e: ServiceError) => e);
    assert.equal(err2.code, status.UNIMPLEMENTED);
  });

  test("a request that is not protobuf is INVALID_ARGUMENT naming the RPC", async () => {
    const err = await unaryCall(client, VERSION, raw, raw, Buffer.from([0x0a, 0xff, 0xff, 0xff])).then(() => assert.fail("no error"), (e: ServiceError) => e);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /^Version: the request is not a valid protobuf message/);
  });

  test("a request over 16 MiB is RESOURCE_EXHAUSTED, and the connection keeps serving", async () => {
    const err = await unaryCall(client, VERSION, raw, raw, Buffer.alloc(17 << 20)).then(() => assert.fail("no error"), (e: ServiceError) => e);
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
    assert.equal((await unaryCall(client, VERSION, encodeVersion, decodeVersion, { version: "after" })).runtimeName, "echo:after");
  });

  test("a passed deadline cancels the call for its handler; the server answers DEADLINE_EXCEEDED", async () => {
    const handlerSaw = new Promise<void>((resolve) => (stalled = resolve));
    const err = await unaryCall(client, RUN_POD, raw, raw, Buffer.alloc(0), 200).then(() => assert.fail("no error"), (e: ServiceError) => e);
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    await handlerSaw;
    assert.equal(seen.cancelled, 1);
    // grpc-js gives up at the deadline by itself: look at what the server sent.
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
    try {
      const req = session.request({ ":method": "POST", ":path": RUN_POD, "content-type": "application/grpc", te: "trailers", "grpc-timeout": "100m" });
      req.end(Buffer.alloc(5));
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("response", resolve));
      assert.equal(headers["grpc-status"], String(status.DEADLINE_EXCEEDED));
      assert.equal(seen.cancelled, 2);
    } finally {
      session.close();
    }
  });

  test("a server stream sends its messages, then its error status", async () => {
    const call = client.makeServerStreamRequest(STREAM, raw, (b: Buffer) => ListContainersResponse.decode(b), Buffer.alloc(0) as never, new Metadata(), {});
    const got: string[] = [];
    call.on("data", (m: ListContainersResponse) => got.push(m.containers[0]!.id));
    const err = await new Promise<ServiceError>((resolve) => call.on("error", resolve));
    assert.deepEqual(got, ["c1", "c2", "c3"]);
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.equal(err.details, "stopped after three");
  });

  test("a client that cancels a stream: the handler sees it cancelled", async () => {
    // StreamContainersRequest { filter (1) { id (1): "hold" } }
    const req = Buffer.from([0x0a, 0x06, 0x0a, 0x04, ...Buffer.from("hold")]);
    const call = client.makeServerStreamRequest(STREAM, raw, raw, req as never, new Metadata(), {});
    call.on("error", () => undefined);
    await new Promise((resolve) => call.once("data", resolve));
    call.cancel();
    await streamCancelled;
  });

  for (const [algorithm, name] of [[2, "gzip"], [1, "deflate"]] as const) {
    test(`a ${name}-compressed request is decompressed`, async () => {
      const c = new Client(`unix://${socket}`, credentials.createInsecure(), { "grpc.default_compression_algorithm": algorithm });
      try {
        const res = await unaryCall(c, VERSION, encodeVersion, decodeVersion, { version: "x".repeat(1000) });
        assert.equal(res.runtimeName, "echo:1000");
        assert.equal(seen.encoding, name);
      } finally {
        c.close();
      }
    });
  }

  test("an unknown grpc-encoding is UNIMPLEMENTED, naming the ones accepted", async () => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
    try {
      const req = session.request({ ":method": "POST", ":path": VERSION, "content-type": "application/grpc", te: "trailers", "grpc-encoding": "snappy" });
      req.end(Buffer.from([1, 0, 0, 0, 0]));
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("response", resolve));
      assert.equal(headers["grpc-status"], String(status.UNIMPLEMENTED));
      assert.equal(headers["grpc-accept-encoding"], "identity,deflate,gzip");
    } finally {
      session.close();
    }
  });

  test("grpc-timeout values", () => {
    assert.equal(parseTimeout("2S"), 2000);
    assert.equal(parseTimeout("150m"), 150);
    assert.equal(parseTimeout("1H"), 3_600_000);
    assert.equal(parseTimeout("5000u"), 5);
    assert.equal(parseTimeout("12x"), undefined);
    assert.equal(parseTimeout("99999999H"), 99999999 * 3_600_000);
  });

  // Last: it stops the server.
  test("graceful shutdown waits for the call in flight, then stops", async () => {
    const res = unaryCall(client, VERSION, encodeVersion, decodeVersion, { version: "slow" });
    while (seen.slowStarted === 0) await new Promise((r) => setTimeout(r, 10));
    const started = Date.now();
    const stopped = new Promise<number>((resolve) => server.tryShutdown(() => resolve(Date.now() - started)));
    assert.equal((await res).runtimeName, "slow");
    assert.ok((await stopped) >= 200, "shutdown waited for the call");
    assert.equal(server.openCalls, 0);
  });

  test("forced shutdown cancels the calls in flight", async () => {
    const sock2 = path.join(dir, "force.sock");
    let cancelled!: () => void;
    const sawCancel = new Promise<void>((resolve) => (cancelled = resolve));
    const s2 = new GrpcServer(methodTable([{ service: "RuntimeService", definition: RuntimeServiceService, handlers: { runPodSandbox: (call: Call) => call.once("cancelled", cancelled) } }]));
    const l2 = net.createServer((c) => s2.serve(c));
    await new Promise<void>((resolve) => l2.listen(sock2, resolve));
    const c2 = new Client(`unix://${sock2}`, credentials.createInsecure());
    try {
      const res = unaryCall(c2, RUN_POD, raw, raw, Buffer.alloc(0)).then(() => assert.fail("no error"), (e: ServiceError) => e);
      while (s2.openCalls === 0) await new Promise((r) => setTimeout(r, 10));
      s2.forceShutdown();
      await sawCancel;
      // The connection is gone without a status: grpc-js reports INTERNAL ("Call ended without gRPC status").
      assert.ok((await res).code > 0);
    } finally {
      c2.close();
      l2.close();
    }
  });
});
