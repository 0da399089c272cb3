// The Prometheus endpoint: GET /metrics in the text exposition format, over http or, with a
// certificate and key, https.
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { Registry } from "prom-client";
import { listenHttp } from "../listen.js";
import type { Logger } from "../log.js";

export interface MetricsServerConfig {
  host: string;
  port: number;
  tlsCert?: string;
  tlsKey?: string;
}

export class MetricsServer {
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** The URL of /metrics once listening. */
  url = "";

  constructor(private readonly config: MetricsServerConfig, private readonly registry: Registry, private readonly log: Logger) {}

  async start(): Promise<void> {
    const { tlsCert, tlsKey } = this.config;
    const tls = !!(tlsCert && tlsKey);
    const server = tls ? https.createServer({ cert: await readFile(tlsCert!), key: await readFile(tlsKey!) }) : http.createServer();
    server.on("request", (req, res) => void this.onRequest(req, res));
    server.on(tls ? "secureConnection" : "connection", (s: Socket) => {
      this.sockets.add(s);
      s.once("close", () => this.sockets.delete(s));
    });
    server.on("clientError", (_err, socket) => socket.destroy());
    this.url = `${await listenHttp(server, this.config.port, this.config.host, tls)}/metrics`;
    this.server = server;
    this.log.info({ url: this.url }, "metrics endpoint listening");
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    if (pathname !== "/metrics") {
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end("404 page not found: berthd serves /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    try {
      const body = await this.registry.metrics();
      res.writeHead(200, { "Content-Type": this.registry.contentType }).end(req.method === "HEAD" ? undefined : body);
    } catch (err) {
      this.log.error({ err: String(err) }, "collecting metrics failed");
      res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8" }).end("collecting metrics failed; see berthd's log\n");
    }
  }
}
