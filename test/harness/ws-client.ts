// A Kubernetes channel WebSocket client for tests, written to the protocol: each message is a
// channel number then data (binary), or a channel digit then base64 (base64 protocols).
import { EventEmitter } from "node:events";
import WebSocket from "ws";

export class ChannelClient extends EventEmitter {
  readonly received = new Map<number, Buffer[]>();
  /** Every message in arrival order, as [channel, bytes]. */
  readonly messages: Array<[number, Buffer]> = [];
  closed = false;
  closeCode: number | undefined;

  constructor(readonly ws: WebSocket, readonly base64: boolean) {
    super();
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      let ch: number;
      let payload: Buffer;
      if (base64) {
        if (isBinary) throw new Error("binary message on a base64 protocol");
        const text = data.toString("latin1");
        ch = text.charCodeAt(0) - 48;
        payload = Buffer.from(text.slice(1), "base64");
      } else {
        if (!isBinary) throw new Error("text message on a binary protocol");
        ch = data[0]!;
        payload = data.subarray(1);
      }
      this.messages.push([ch, payload]);
      const list = this.received.get(ch) ?? [];
      list.push(payload);
      this.received.set(ch, list);
      this.emit("data", ch, payload);
    });
    ws.on("close", (code) => {
      this.closed = true;
      this.closeCode = code;
      this.emit("close");
    });
    ws.on("error", () => undefined);
  }

  static connect(url: string, protocols: string[]): Promise<ChannelClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url.replace(/^http/, "ws"), protocols, { rejectUnauthorized: false });
      ws.once("open", () => resolve(new ChannelClient(ws, ws.protocol.includes("base64"))));
      ws.once("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, body })));
      });
      ws.once("error", reject);
    });
  }

  text(ch: number): string {
    return Buffer.concat(this.received.get(ch) ?? []).toString();
  }

  send(ch: number, data: Buffer | string): void {
    const b = Buffer.from(data);
    if (this.base64) this.ws.send(String.fromCharCode(48 + ch) + b.toString("base64"));
    else this.ws.send(Buffer.concat([Buffer.of(ch), b]));
  }

  /** v5: tells the server the client will send nothing more on channel ch. */
  closeChannel(ch: number): void {
    this.ws.send(Buffer.of(255, ch));
  }

  waitFor(ch: number, re: RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(this.text(ch))) {
          this.off("data", check);
          clearTimeout(t);
          resolve(this.text(ch));
        }
      };
      const t = setTimeout(() => {
        this.off("data", check);
        reject(new Error(`timed out waiting for ${re} on channel ${ch}; got ${JSON.stringify(this.text(ch))}`));
      }, timeoutMs);
      this.on("data", check);
      check();
    });
  }

  waitClose(timeoutMs = 15_000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("websocket did not close")), timeoutMs);
      this.once("close", () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
