// A small SPDY/3.1 client for tests, written from the SPDY/3.1 draft and the Kubernetes
// streaming conventions (not from berth's server code): HTTP upgrade, SYN_STREAM/SYN_REPLY,
// DATA with FIN, RST_STREAM, PING, WINDOW_UPDATE (optional), GOAWAY.
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import net from "node:net";
import tls from "node:tls";
import zlib from "node:zlib";

// The SPDY/3 zlib dictionary (spec section 2.6.10.1), as its words and tail text.
const DICT_WORDS = "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age allow authorization cache-control connection content-base content-encoding content-language content-length content-location content-md5 content-range content-type date etag expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate method get status 200|OK version HTTP/1.1 url public set-cookie keep-alive origin";
const DICT_TAIL = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505" +
  "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized" +
  "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable" +
  "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
  "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain," +
  "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

export const DICTIONARY = Buffer.concat([
  ...DICT_WORDS.split(" ").map((w) => w.replace("|", " ")).flatMap((w) => {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(w.length);
    return [n, Buffer.from(w, "latin1")];
  }),
  Buffer.from(DICT_TAIL, "latin1"),
]);
export const DICTIONARY_SHA256 = createHash("sha256").update(DICTIONARY).digest("hex");

export interface UpgradeResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  socket: net.Socket;
}

/** Sends an HTTP/1.1 upgrade request and reads the response head; the socket is left open. */
export function httpUpgrade(url: string, headers: Record<string, string | string[]>, method = "POST"): Promise<UpgradeResult> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
    const socket: net.Socket = u.protocol === "https:"
      ? tls.connect({ host: u.hostname, port, rejectUnauthorized: false })
      : net.connect(port, u.hostname);
    const lines = [`${method} ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`];
    for (const [k, v] of Object.entries(headers)) for (const one of [v].flat()) lines.push(`${k}: ${one}`);
    socket.once(u.protocol === "https:" ? "secureConnect" : "connect", () => socket.write(lines.join("\r\n") + "\r\n\r\n"));
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      socket.off("error", reject);
      const head = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(head[0]!.split(" ")[1]);
      const hs: Record<string, string> = {};
      for (const l of head.slice(1)) {
        const i = l.indexOf(":");
        const k = l.slice(0, i).trim().toLowerCase();
        hs[k] = hs[k] ? `${hs[k]}, ${l.slice(i + 1).trim()}` : l.slice(i + 1).trim();
      }
      const rest = buf.subarray(end + 4);
      if (status !== 101) {
        let body = rest.toString();
        socket.on("data", (x: Buffer) => (body += x.toString()));
        socket.on("close", () => resolve({ status, headers: hs, body, socket }));
        socket.on("error", () => undefined);
        return;
      }
      socket.pause();
      if (rest.length) socket.unshift(rest);
      resolve({ status, headers: hs, body: "", socket });
    };
    socket.on("data", onData);
    socket.once("error", reject);
  });
}

function ctrl(type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8003, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
  return Buffer.concat([h, payload]);
}

export class ClientStream extends EventEmitter {
  chunks: Buffer[] = [];
  remoteFin = false;
  resetStatus: number | undefined;
  replied = false;
  received = 0;
  constructor(readonly conn: SpdyClient, readonly id: number, readonly headers: Record<string, string>) {
    super();
  }
  text(): string {
    return Buffer.concat(this.chunks).toString();
  }
  write(data: Buffer | string): void {
    this.conn.sendData(this.id, Buffer.from(data), false);
  }
  end(data?: Buffer | string): void {
    this.conn.sendData(this.id, Buffer.from(data ?? ""), true);
  }
  reset(status = 5): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(this.id, 0);
    p.writeUInt32BE(status, 4);
    this.conn.sendRaw(ctrl(3, 0, p));
  }
  /** Resolves when the server has closed its side (FIN) or reset the stream. */
  done(): Promise<void> {
    if (this.remoteFin || this.resetStatus !== undefined) return Promise.resolve();
    return new Promise((r) => this.once("done", r));
  }
  /** Resolves when the received text matches. */
  waitFor(re: RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(this.text())) {
          this.off("data", check);
          clearTimeout(t);
          resolve(this.text());
        }
      };
      const t = setTimeout(() => {
        this.off("data", check);
        reject(new Error(`timed out waiting for ${re} on stream ${JSON.stringify(this.headers)}; got ${JSON.stringify(this.text())}`));
      }, timeoutMs);
      this.on("data", check);
      check();
    });
  }
}

export interface SpdyClientOptions {
  /** Send WINDOW_UPDATE for received data (true) or never, like Go's spdystream (false). */
  flowControl?: boolean;
}

export class SpdyClient extends EventEmitter {
  /** The id the next createStream uses (tests may rewind it to misbehave). */
  nextId = 1;
  private buf = Buffer.alloc(0);
  private readonly deflate = zlib.createDeflate({ dictionary: DICTIONARY });
  private readonly inflate = zlib.createInflate({ dictionary: DICTIONARY });
  private work: Promise<unknown> = Promise.resolve();
  readonly streams = new Map<number, ClientStream>();
  goaway: { lastGood: number; status: number } | undefined;
  closed = false;
  pings = new Map<number, () => void>();
  framesIn: string[] = [];

  constructor(readonly socket: net.Socket, private readonly opts: SpdyClientOptions = {}) {
    super();
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("close", () => {
      // After every frame already read has been handled.
      this.work = this.work.then(() => {
        this.closed = true;
        for (const s of this.streams.values()) s.emit("done");
        this.emit("close");
      });
    });
    socket.on("error", () => undefined);
    socket.resume();
  }

  static async connect(url: string, protocols: string[], opts: SpdyClientOptions = {}): Promise<SpdyClient> {
    const r = await httpUpgrade(url, { Connection: "Upgrade", Upgrade: "SPDY/3.1", "X-Stream-Protocol-Version": protocols });
    if (r.status !== 101) throw Object.assign(new Error(`upgrade refused: ${r.status} ${r.body}`), { status: r.status, body: r.body });
    const c = new SpdyClient(r.socket, opts);
    c.protocol = r.headers["x-stream-protocol-version"];
    return c;
  }

  protocol: string | undefined;

  private zrun(z: zlib.Deflate | zlib.Inflate, input: Buffer): Promise<Buffer> {
    const next = this.work.then(() => new Promise<Buffer>((resolve) => {
      const out: Buffer[] = [];
      const on = (d: Buffer) => out.push(d);
      z.on("data", on);
      z.write(input);
      z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        z.off("data", on);
        resolve(Buffer.concat(out));
      });
    }));
    this.work = next;
    return next;
  }

  sendRaw(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  /** Opens a stream and waits for the server's SYN_REPLY. */
  async createStream(headers: Record<string, string>): Promise<ClientStream> {
    const id = this.nextId;
    this.nextId += 2;
    const pairs = Object.entries(headers);
    const parts = [Buffer.alloc(4)];
    parts[0]!.writeUInt32BE(pairs.length);
    for (const [k, v] of pairs) {
      for (const s of [k.toLowerCase(), v]) {
        const n = Buffer.alloc(4);
        n.writeUInt32BE(Buffer.byteLength(s));
        parts.push(n, Buffer.from(s));
      }
    }
    const block = await this.zrun(this.deflate, Buffer.concat(parts));
    const p = Buffer.alloc(10);
    p.writeUInt32BE(id, 0);
    const s = new ClientStream(this, id, headers);
    this.streams.set(id, s);
    this.sendRaw(ctrl(1, 0, Buffer.concat([p, block])));
    await new Promise<void>((resolve, reject) => {
      if (s.replied) return resolve();
      const t = setTimeout(() => reject(new Error(`no SYN_REPLY for stream ${id}`)), 10_000);
      s.once("reply", () => {
        clearTimeout(t);
        resolve();
      });
      s.once("done", () => {
        clearTimeout(t);
        if (!s.replied) reject(new Error(`stream ${id} ended before its reply (reset ${s.resetStatus})`));
      });
    });
    return s;
  }

  sendData(id: number, data: Buffer, fin: boolean): void {
    for (let off = 0; off < data.length || (fin && off === 0); off += 32768) {
      const chunk = data.subarray(off, off + 32768);
      const last = off + 32768 >= data.length;
      const h = Buffer.alloc(8);
      h.writeUInt32BE(id, 0);
      h.writeUInt32BE((((fin && last ? 1 : 0) << 24) | chunk.length) >>> 0, 4);
      this.sendRaw(Buffer.concat([h, chunk]));
      if (data.length === 0) break;
    }
  }

  windowUpdate(id: number, delta: number): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(id, 0);
    p.writeUInt32BE(delta, 4);
    this.sendRaw(ctrl(9, 0, p));
  }

  settings(entries: Array<[number, number]>): void {
    const p = Buffer.alloc(4 + 8 * entries.length);
    p.writeUInt32BE(entries.length, 0);
    entries.forEach(([id, v], i) => {
      p.writeUInt32BE(id, 4 + 8 * i);
      p.writeUInt32BE(v, 8 + 8 * i);
    });
    this.sendRaw(ctrl(4, 0, p));
  }

  ping(id: number): Promise<void> {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(id);
    const answered = new Promise<void>((r) => this.pings.set(id, r));
    this.sendRaw(ctrl(6, 0, p));
    return answered;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt32BE(4) & 0xffffff;
      if (this.buf.length < 8 + len) return;
      const frame = this.buf.subarray(0, 8 + len);
      this.buf = this.buf.subarray(8 + len);
      this.work = this.work.then(() => this.handle(frame));
    }
  }

  private async handle(f: Buffer): Promise<void> {
    const flags = f[4]!;
    const p = f.subarray(8);
    if (!(f[0]! & 0x80)) {
      const id = f.readUInt32BE(0) & 0x7fffffff;
      this.framesIn.push(`data:${id}:${p.length}${flags & 1 ? ":fin" : ""}`);
      const s = this.streams.get(id);
      if (!s) return;
      if (p.length) {
        s.chunks.push(Buffer.from(p));
        s.received += p.length;
        s.emit("data", p);
        if (this.opts.flowControl) {
          this.windowUpdate(id, p.length);
          this.windowUpdate(0, p.length);
        }
      }
      if (flags & 1) {
        s.remoteFin = true;
        s.emit("done");
      }
      return;
    }
    const type = f.readUInt16BE(2);
    this.framesIn.push(`ctrl:${type}:${type === 2 || type === 3 ? p.readUInt32BE(0) : ""}`);
    switch (type) {
      case 2: { // SYN_REPLY
        const id = p.readUInt32BE(0) & 0x7fffffff;
        await new Promise<void>((resolve) => {
          const out: Buffer[] = [];
          const on = (d: Buffer) => out.push(d);
          this.inflate.on("data", on);
          this.inflate.write(p.subarray(4));
          this.inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.inflate.off("data", on);
            resolve();
          });
        });
        const s = this.streams.get(id);
        if (s) {
          s.replied = true;
          s.emit("reply");
          if (flags & 1) {
            s.remoteFin = true;
            s.emit("done");
          }
        }
        return;
      }
      case 3: { // RST_STREAM
        const s = this.streams.get(p.readUInt32BE(0) & 0x7fffffff);
        if (s) {
          s.resetStatus = p.readUInt32BE(4);
          s.emit("done");
        }
        return;
      }
      case 6: { // PING
        const id = p.readUInt32BE(0);
        this.pings.get(id)?.();
        this.pings.delete(id);
        return;
      }
      case 7: // GOAWAY
        this.goaway = { lastGood: p.readUInt32BE(0) & 0x7fffffff, status: p.readUInt32BE(4) };
        this.emit("goaway");
        return;
      default:
        return;
    }
  }
}

/** The streams of a remote command (exec/attach) session. */
export interface ExecStreams {
  c: SpdyClient;
  error: ClientStream;
  stdin?: ClientStream;
  stdout?: ClientStream;
  stderr?: ClientStream;
  resize?: ClientStream;
}

/** Opens the streams a remote command client opens, in client-go's order (error first). */
export async function openExecStreams(url: string, protocols: string[], want: { stdin?: boolean; stdout?: boolean; stderr?: boolean; resize?: boolean }, opts: SpdyClientOptions = {}): Promise<ExecStreams> {
  const c = await SpdyClient.connect(url, protocols, opts);
  const s: ExecStreams = { c, error: await c.createStream({ streamType: "error" }) };
  if (want.stdin) s.stdin = await c.createStream({ streamType: "stdin" });
  if (want.stdout) s.stdout = await c.createStream({ streamType: "stdout" });
  if (want.stderr) s.stderr = await c.createStream({ streamType: "stderr" });
  if (want.resize) s.resize = await c.createStream({ streamType: "resize" });
  return s;
}
