// berth's streaming server: the URLs the Exec, Attach and PortForward RPCs hand out
// (/exec/<token>, /attach/<token>, /portforward/<token>), upgraded to SPDY/3.1 or WebSocket.
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import { InvalidArgument } from "../errors.js";
import { listenHttp } from "../listen.js";
import type { Logger } from "../log.js";
import { parsePort, serveSpdyPortForward, SPDY_PORTFORWARD_PROTOCOLS } from "./portforward.js";
import { serveSpdyRemoteCommand, SPDY_REMOTECOMMAND_PROTOCOLS } from "./remotecommand.js";
import { RequestCache } from "./request-cache.js";
import { SpdySession } from "./spdy.js";
import type { StreamRuntime } from "../runtime/stream-io.js";
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamingService, StreamRequest } from "./types.js";
import { chooseProtocol, serveWsPortForward, serveWsRemoteCommand, WS_PORTFORWARD_PROTOCOLS, WS_REMOTECOMMAND_PROTOCOLS } from "./websocket.js";

export interface StreamServerConfig {
  address: string;
  port: number;
  /** A connection with no traffic for this long is closed. */
  idleTimeoutMs: number;
  /** How long a client has to open its streams after the upgrade. */
  streamCreationTimeoutMs?: number;
  tlsCert?: string;
  tlsKey?: string;
  /** How long a URL stays good (tests shorten it). */
  tokenTtlMs?: number;
}

type ChosenProtocol = http.IncomingMessage & { berthProtocol?: string };

const PATH = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]{1,128})$/;

export class StreamServer implements StreamingService {
  private server: http.Server | https.Server | undefined;
  private readonly cache: RequestCache;
  private readonly sockets = new Set<Duplex>();
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: 4 * 1024 * 1024,
    perMessageDeflate: false,
    // The protocol is chosen before the upgrade (it depends on the request kind); ws only echoes it.
    handleProtocols: (_offered, req) => (req as ChosenProtocol).berthProtocol || false,
  });
  private base = "";

  constructor(private readonly config: StreamServerConfig, private readonly runtime: StreamRuntime, private readonly log: Logger) {
    this.cache = new RequestCache(config.tokenTtlMs);
  }

  /** The scheme, host and port URLs start with, once started. */
  get baseUrl(): string {
    return this.base;
  }

  /** Connections open right now (upgraded or not). */
  get connectionCount(): number {
    return this.sockets.size;
  }

  async start(): Promise<void> {
    const { tlsCert, tlsKey } = this.config;
    const tls = !!(tlsCert && tlsKey);
    const server = tls
      ? https.createServer({ cert: await readFile(tlsCert!), key: await readFile(tlsKey!) })
      : http.createServer();
    server.on("request", (req, res) => this.onRequest(req, res));
    server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on("connection", (s: Socket) => this.track(s));
    server.on("secureConnection", (s: Socket) => this.track(s));
    server.on("clientError", (_err, socket: Duplex) => socket.destroy());
    this.base = await listenHttp(server, this.config.port, this.config.address, tls);
    this.server = server;
    this.log.info({ url: this.base }, "streaming server listening");
  }

  /** Stops listening and closes every streaming connection (their processes are released). */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.wss.close();
    await closed;
  }

  private track(s: Duplex): void {
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
  }

  async exec(req: Omit<ExecRequest, "kind">): Promise<string> {
    await this.runtime.checkContainer(req.containerId);
    return this.url("exec", { kind: "exec", ...req });
  }

  async attach(req: Omit<AttachRequest, "kind">): Promise<string> {
    await this.runtime.checkContainer(req.containerId);
    return this.url("attach", { kind: "attach", ...req });
  }

  async portForward(req: Omit<PortForwardRequest, "kind">): Promise<string> {
    for (const p of req.ports) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgument(`port ${p} is out of range: ports are 1..65535`);
    }
    await this.runtime.checkSandbox(req.sandboxId);
    return this.url("portforward", { kind: "portforward", ...req });
  }

  private url(path: string, req: StreamRequest): string {
    if (!this.server) throw new Error("the streaming server is not running");
    return `${this.base}/${path}/${this.cache.insert(req)}`;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const m = PATH.exec(new URL(req.url ?? "/", "http://x").pathname);
    res.setHeader("Content-Type", "text/plain; charset=utf-8");
    if (!m) {
      res.writeHead(404).end("404 page not found\n");
      return;
    }
    // Reading the request consumes the token: a plain GET/POST cannot stream, so it is spent.
    if (!this.cache.consume(m[2]!)) {
      res.writeHead(404).end("404 page not found\n");
      return;
    }
    res.writeHead(400).end("unable to upgrade: missing upgrade headers in request\n");
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const m = PATH.exec(url.pathname);
    const request = m ? this.cache.consume(m[2]!) : undefined;
    if (!m || !request || request.kind !== m[1]) {
      reject(socket, 404, "404 page not found");
      return;
    }
    const upgrade = (req.headers.upgrade ?? "").toLowerCase();
    const connection = (req.headers.connection ?? "").toLowerCase().split(",").map((s) => s.trim());
    if (!connection.includes("upgrade")) {
      reject(socket, 400, "unable to upgrade: missing upgrade headers in request");
      return;
    }
    if (upgrade === "websocket") this.upgradeWebSocket(req, socket, head, request, url);
    else if (upgrade === "spdy/3.1") this.upgradeSpdy(req, socket, head, request);
    else reject(socket, 400, `unable to upgrade: unsupported protocol "${req.headers.upgrade}" (SPDY/3.1 or websocket)`);
  }

  private upgradeSpdy(req: http.IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest): void {
    const offered = (req.headers["x-stream-protocol-version"] ?? "").toString().split(",").map((s) => s.trim()).filter(Boolean);
    const known = request.kind === "portforward" ? SPDY_PORTFORWARD_PROTOCOLS : SPDY_REMOTECOMMAND_PROTOCOLS;
    if (offered.length === 0) {
      reject(socket, 400, "unable to upgrade: X-Stream-Protocol-Version is required");
      return;
    }
    const protocol = offered.find((p) => known.includes(p));
    if (!protocol) {
      reject(socket, 403, `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(" ")}], server accepts [${known.join(" ")}]`,
        known.map((p) => `X-Accepted-Stream-Protocol-Versions: ${p}`));
      return;
    }
    socket.write(["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", "Upgrade: SPDY/3.1", `X-Stream-Protocol-Version: ${protocol}`, "", ""].join("\r\n"));
    if (head.length > 0) socket.unshift(head);
    this.setIdle(socket);
    const session = new SpdySession(socket, { log: this.log });
    const log = this.log.child({ stream: request.kind, protocol, transport: "spdy" });
    const opts = { log, streamCreationTimeoutMs: this.config.streamCreationTimeoutMs ?? 30_000 };
    const served = request.kind === "portforward"
      ? serveSpdyPortForward(session, request, this.runtime, opts)
      : serveSpdyRemoteCommand(session, protocol, request, this.runtime, opts);
    served.catch((err) => log.error({ err: String(err) }, "streaming session failed")).finally(() => session.close());
  }

  private upgradeWebSocket(req: http.IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest, url: URL): void {
    const offered = (req.headers["sec-websocket-protocol"] ?? "").toString().split(",").map((s) => s.trim()).filter(Boolean);
    const known = request.kind === "portforward" ? WS_PORTFORWARD_PROTOCOLS : WS_REMOTECOMMAND_PROTOCOLS;
    const protocol = chooseProtocol(offered, known);
    if (protocol === undefined) {
      reject(socket, 400, `unable to upgrade: requested protocol(s) [${offered.join(" ")}] are not supported; supports [${Object.keys(known).filter(Boolean).join(" ")}]`);
      return;
    }
    if (request.kind === "portforward" && request.ports.length === 0) {
      // A WebSocket client names its ports in the URL when the CRI request named none.
      const ports = url.searchParams.getAll("port").map((p) => parsePort(p));
      if (ports.length === 0 || ports.some((p) => p === undefined)) {
        reject(socket, 400, `port forward over WebSocket needs ports (1..65535) in the request or as ?port= query parameters`);
        return;
      }
      request.ports = ports as number[];
    }
    (req as ChosenProtocol).berthProtocol = protocol;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.setIdle(socket);
      const log = this.log.child({ stream: request.kind, protocol, transport: "websocket" });
      ws.on("error", (err) => log.debug({ err: err.message }, "websocket error"));
      const served = request.kind === "portforward"
        ? serveWsPortForward(ws, protocol, request, this.runtime, log)
        : serveWsRemoteCommand(ws, protocol, request, this.runtime, log);
      served.catch((err) => log.error({ err: String(err) }, "streaming session failed")).finally(() => {
        if (ws.readyState === ws.OPEN) ws.close(1000);
      });
    });
  }

  private setIdle(socket: Duplex): void {
    const s = socket as Socket;
    if (typeof s.setTimeout !== "function" || this.config.idleTimeoutMs <= 0) return;
    s.setTimeout(this.config.idleTimeoutMs, () => {
      this.log.debug({ idleMs: this.config.idleTimeoutMs }, "streaming connection idle: closing it");
      s.destroy();
    });
  }
}

function reject(socket: Duplex, code: number, message: string, extraHeaders: string[] = []): void {
  const body = `${message}\n`;
  const reason = http.STATUS_CODES[code] ?? "Error";
  socket.end([
    `HTTP/1.1 ${code} ${reason}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...extraHeaders,
    "Connection: close",
    "",
    body,
  ].join("\r\n"));
}
