// Starts Debian's docker-registry on 127.0.0.1 (a free port, temp storage) for a test, optionally
// behind token auth served by a small in-process token server that signs RS256 JWTs with a
// throwaway key. Tests push their own images (see images.ts); nothing reaches the internet.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createPrivateKey, randomBytes, sign, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";

export interface TokenUser {
  password: string;
  /** Repositories this user may pull (and push); "*" for all. */
  repos?: string[];
}

export interface RegistryOptions {
  /** Turn on token auth with these users; anonymous users may pull the repos in `anonymousPull`. */
  tokenAuth?: { users: Record<string, TokenUser>; anonymousPull?: string[] };
  /** htpasswd-style Basic auth is not offered by this harness: token auth covers the Bearer and Basic-to-token paths. */
}

export interface TestRegistry {
  /** "127.0.0.1:<port>": use as the domain in references. */
  host: string;
  /** "http://127.0.0.1:<port>" */
  url: string;
  dir: string;
  /** Token server, when token auth is on. */
  tokenUrl?: string;
  /** Token requests seen: who asked for what (passwords never recorded). */
  tokenRequests: Array<{ user: string; scope: string; granted: boolean }>;
  /** A bearer token for pushing (token auth), for images.ts. */
  pushAuth?: { username: string; password: string };
  /** Flips bytes in a stored blob so the registry serves content that no longer matches its digest. */
  corruptBlob(digest: string): Promise<void>;
  logs(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url: string, proc: ChildProcess, logs: () => string): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited: ${logs()}`);
    const ok = await new Promise<boolean>((resolve) => {
      http.get(url, (res) => {
        res.resume();
        resolve(true);
      }).on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`docker-registry did not answer at ${url}: ${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString("base64url");
}

interface TokenServer {
  url: string;
  close(): Promise<void>;
}

async function startTokenServer(key: KeyObject, certDer: Buffer, issuer: string, service: string, opts: NonNullable<RegistryOptions["tokenAuth"]>, seen: TestRegistry["tokenRequests"]): Promise<TokenServer> {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    const scope = u.searchParams.get("scope") ?? "";
    let user = "";
    const authz = req.headers.authorization ?? "";
    if (authz.startsWith("Basic ")) {
      const [name, ...rest] = Buffer.from(authz.slice(6), "base64").toString("utf8").split(":");
      const pass = rest.join(":");
      const known = opts.users[name ?? ""];
      if (!known || known.password !== pass) {
        seen.push({ user: name ?? "", scope, granted: false });
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ details: "incorrect username or password" }));
        return;
      }
      user = name!;
    }
    const access: Array<{ type: string; name: string; actions: string[] }> = [];
    for (const s of scope.split(" ").filter(Boolean)) {
      const [type, name, actions] = s.split(":");
      if (type !== "repository" || !name) continue;
      const allowed = user
        ? (opts.users[user]!.repos ?? ["*"]).some((r) => r === "*" || r === name)
        : (opts.anonymousPull ?? []).includes(name);
      if (!allowed) continue;
      const wanted = (actions ?? "").split(",").filter(Boolean);
      access.push({ type, name, actions: user ? wanted : wanted.filter((a) => a === "pull") });
    }
    seen.push({ user, scope, granted: access.length > 0 });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "RS256", typ: "JWT", x5c: [certDer.toString("base64")] };
    const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${b64url(sign("sha256", Buffer.from(signingInput), key))}`;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/token`,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-registry-"));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const seen: TestRegistry["tokenRequests"] = [];
  let token: TokenServer | undefined;
  let authYaml = "";
  let pushAuth: TestRegistry["pushAuth"];
  if (opts.tokenAuth) {
    const keyFile = path.join(dir, "key.pem");
    const certFile = path.join(dir, "cert.pem");
    await execa("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", "/CN=berth-test-token"]);
    const key = createPrivateKey(await readFile(keyFile));
    const certPem = await readFile(certFile, "utf8");
    const certDer = Buffer.from(certPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
    const pusher = `pusher-${randomBytes(4).toString("hex")}`;
    pushAuth = { username: pusher, password: randomBytes(12).toString("hex") };
    const users = { ...opts.tokenAuth.users, [pusher]: { password: pushAuth.password, repos: ["*"] } };
    token = await startTokenServer(key, certDer, "berth-test-issuer", "berth-test-registry", { ...opts.tokenAuth, users }, seen);
    authYaml = `auth:\n  token:\n    realm: ${token.url}\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: ${certFile}\n`;
  }
  const config = path.join(dir, "config.yml");
  await writeFile(config, [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${path.join(dir, "data")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}`,
    `  secret: ${randomBytes(16).toString("hex")}`,
    authYaml,
  ].join("\n"));
  let out = "";
  const proc = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-20000)));
  proc.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-20000)));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  try {
    await waitHttp(`http://${host}/v2/`, proc, () => out);
  } catch (err) {
    proc.kill("SIGKILL");
    await token?.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host,
    url: `http://${host}`,
    dir,
    tokenUrl: token?.url,
    tokenRequests: seen,
    pushAuth,
    corruptBlob: async (digest: string) => {
      const hex = digest.replace(/^sha256:/, "");
      const file = path.join(dir, "data", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
      const data = await readFile(file);
      data[Math.floor(data.length / 2)] ^= 0xff;
      await writeFile(file, data);
      if (createHash("sha256").update(data).digest("hex") === hex) throw new Error("corruption did not change the digest");
    },
    logs: () => out,
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      await token?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
