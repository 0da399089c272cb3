// Starting an HTTP(S) server on its configured address, shared by the streaming server and the
// metrics endpoint: both need the bound port back (port 0 picks one) as a base URL.
import type { Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";

/** Listens on host:port and resolves with `http(s)://host:port` as bound (an IPv6 host in brackets). */
export async function listenHttp(server: HttpServer | HttpsServer, port: number, host: string, tls: boolean): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const bound = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return `${tls ? "https" : "http"}://${bound}:${addr.port}`;
}
