// A gRPC server-streaming call made over node's http2 directly, for tests that need a client
// which really stops reading: with no reader, the stream's receive window is never given back,
// so berthd's writes stall on HTTP/2 flow control (grpc-js's own client keeps reading into memory).
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import net from "node:net";

export interface RawStream {
  session: ClientHttp2Session;
  stream: ClientHttp2Stream;
  /** Resolves with the response headers (berthd sends them when the call starts). */
  headers: Promise<http2.IncomingHttpHeaders>;
  /** Starts reading: resolves with the messages' payloads and the grpc-status once the call ends. */
  readAll(): Promise<{ messages: Buffer[]; status: string | undefined; message: string | undefined; error?: Error }>;
  close(): void;
}

/** Opens `path` (e.g. "/runtime.v1.RuntimeService/GetContainerEvents") with an encoded request, and does not read. */
export function rawServerStream(socket: string, path: string, request: Uint8Array = new Uint8Array()): RawStream {
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
  session.on("error", () => undefined);
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  frame.set(request, 5);
  stream.end(frame);
  stream.pause();
  const headers = new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
    stream.once("response", resolve);
    stream.once("error", reject);
  });
  let trailers: http2.IncomingHttpHeaders | undefined;
  stream.on("trailers", (t) => (trailers = t));
  const readAll = () =>
    new Promise<{ messages: Buffer[]; status: string | undefined; message: string | undefined; error?: Error }>((resolve) => {
      const chunks: Buffer[] = [];
      const done = (error?: Error) => {
        const all = Buffer.concat(chunks);
        const messages: Buffer[] = [];
        for (let off = 0; off + 5 <= all.length;) {
          const len = all.readUInt32BE(off + 1);
          if (off + 5 + len > all.length) break;
          messages.push(all.subarray(off + 5, off + 5 + len));
          off += 5 + len;
        }
        const t = trailers;
        resolve({ messages, status: t?.["grpc-status"] as string | undefined, message: t?.["grpc-message"] ? decodeURIComponent(String(t["grpc-message"])) : undefined, error });
      };
      stream.on("data", (d: Buffer) => chunks.push(d));
      stream.once("end", () => done());
      stream.once("error", (err) => done(err));
      stream.resume();
    });
  return { session, stream, headers, readAll, close: () => session.destroy() };
}
