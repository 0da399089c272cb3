// Starts Debian's docker-registry on 127.0.0.1 (a free port, temp storage) for a test, optionally
// behind token auth served by a small in-process token server that signs RS256 JWTs with a
// throwaway key, or behind htpasswd Basic auth (bcrypt entries written by apache2-utils' htpasswd).
// Tests push their own images (see images.ts); nothing reaches the internet.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createPrivateKey, randomBytes, sign, type KeyObject } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
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
  /**
   * Turn on token auth with these users; anonymous users may pull the repos in `anonymousPull`.
   * `refreshTokens` (OAuth2 refresh token -> user) are accepted by a POST grant_type=refresh_token.
   */
  tokenAuth?: { users: Record<string, TokenUser>; anonymousPull?: string[]; refreshTokens?: Record<string, string> };
  /** Turn on htpasswd Basic auth with these users (name -> password); docker-registry 2.8 allows it over plain http. */
  htpasswd?: Record<string, string>;
  /** Serve https with a certificate for IP 127.0.0.1 signed by a throwaway test CA (`caFile`). */
  tls?: boolean;
}

export interface TestRegistry {
  /** "127.0.0.1:<port>": use as the domain in references. */
  host: string;
  /** "http://127.0.0.1:<port>" ("https://…" with tls). */
  url: string;
  /** With tls: the test CA's PEM file and text (trust it to reach the registry). */
  caFile?: string;
  ca?: string;
  dir: string;
  /** Token server, when token auth is on. */
  tokenUrl?: string;
  /** Token requests seen: who asked for what, how (GET with Basic, or a POST grant); secrets never recorded. */
  tokenRequests: Array<{ user: string; scope: string; granted: boolean; grant?: string }>;
  /** Credentials for pushing (token or htpasswd auth), for images.ts. */
  pushAuth?: { username: string; password: string };
  /** Signs a registry token for `user` with `scope` ("repository:a/b:pull"), as the token server would (token auth only). */
  issueToken(user: string, scope: string): string;
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

async function waitHttp(url: string, proc: ChildProcess, logs: () => string, ca?: string): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited: ${logs()}`);
    const ok = await new Promise<boolean>((resolve) => {
      (ca ? https : http).get(url, { ca }, (res) => {
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

type TokenAuth = NonNullable<RegistryOptions["tokenAuth"]>;

/** The access a token for `user` ("" = anonymous) gets for a space-separated `scope`. */
function grantedAccess(opts: TokenAuth, user: string, scope: string): Array<{ type: string; name: string; actions: string[] }> {
  const access: Array<{ type: string; name: string; actions: string[] }> = [];
  for (const s of scope.split(" ").filter(Boolean)) {
    const [type, name, actions] = s.split(":");
    if (type !== "repository" || !name) continue;
    const allowed = user
      ? (opts.users[user]?.repos ?? ["*"]).some((r) => r === "*" || r === name)
      : (opts.anonymousPull ?? []).includes(name);
    if (!allowed) continue;
    const wanted = (actions ?? "").split(",").filter(Boolean);
    access.push({ type, name, actions: user ? wanted : wanted.filter((a) => a === "pull") });
  }
  return access;
}

function signToken(key: KeyObject, certDer: Buffer, issuer: string, service: string, user: string, access: unknown[]): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "RS256", typ: "JWT", x5c: [certDer.toString("base64")] };
  const claims = { iss: issuer, sub: user, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${signingInput}.${b64url(sign("sha256", Buffer.from(signingInput), key))}`;
}

async function startTokenServer(mint: (user: string, scope: string) => { token: string; granted: boolean }, opts: TokenAuth, seen: TestRegistry["tokenRequests"]): Promise<TokenServer> {
  const refuse = (res: http.ServerResponse, code: number, body: object) => {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  // POST: the OAuth2 form grants docker uses with an identity token (refresh_token) or a password.
  const post = (res: http.ServerResponse, body: string) => {
    const form = new URLSearchParams(body);
    const grant = form.get("grant_type") ?? "";
    const scope = form.get("scope") ?? "";
    let user: string | undefined;
    if (grant === "refresh_token") user = opts.refreshTokens?.[form.get("refresh_token") ?? ""];
    else if (grant === "password") {
      const name = form.get("username") ?? "";
      if (opts.users[name] && opts.users[name]!.password === form.get("password")) user = name;
    } else return refuse(res, 400, { error: "unsupported_grant_type" });
    if (!user) {
      seen.push({ user: form.get("username") ?? "", scope, granted: false, grant });
      return refuse(res, 400, { error: "invalid_grant", error_description: "unknown refresh token or bad password" });
    }
    const { token, granted } = mint(user, scope);
    seen.push({ user, scope, granted, grant });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ access_token: token, scope, expires_in: 300, issued_at: new Date().toISOString() }));
  };
  const server = http.createServer((req, res) => {
    if (req.method === "POST") {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => post(res, body));
      return;
    }
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
        return refuse(res, 401, { details: "incorrect username or password" });
      }
      user = name!;
    }
    const { token, granted } = mint(user, scope);
    seen.push({ user, scope, granted });
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
  let issueToken: TestRegistry["issueToken"] = () => {
    throw new Error("issueToken needs a registry with tokenAuth");
  };
  if (opts.tokenAuth && opts.htpasswd) throw new Error("tokenAuth and htpasswd are exclusive");
  if (opts.htpasswd) {
    const pusher = `pusher-${randomBytes(4).toString("hex")}`;
    pushAuth = { username: pusher, password: randomBytes(12).toString("hex") };
    const lines: string[] = [];
    for (const [name, pass] of Object.entries({ ...opts.htpasswd, [pusher]: pushAuth.password })) {
      lines.push((await execa("htpasswd", ["-Bbn", name, pass])).stdout.trim());
    }
    const file = path.join(dir, "htpasswd");
    await writeFile(file, `${lines.join("\n")}\n`, { mode: 0o600 });
    authYaml = `auth:\n  htpasswd:\n    realm: berth-test-realm\n    path: ${file}\n`;
  }
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
    const auth = { ...opts.tokenAuth, users };
    const mint = (user: string, scope: string) => {
      const access = grantedAccess(auth, user, scope);
      return { token: signToken(key, certDer, "berth-test-issuer", "berth-test-registry", user, access), granted: access.length > 0 };
    };
    issueToken = (user, scope) => mint(user, scope).token;
    token = await startTokenServer(mint, auth, seen);
    authYaml = `auth:\n  token:\n    realm: ${token.url}\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: ${certFile}\n`;
  }
  let tlsYaml = "";
  let ca: { file: string; pem: string } | undefined;
  if (opts.tls) {
    const f = (n: string) => path.join(dir, n);
    await execa("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=berth-test-ca"]);
    await execa("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("tls.key"), "-out", f("tls.csr"), "-subj", "/CN=127.0.0.1"]);
    await writeFile(f("san.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    await execa("openssl", ["x509", "-req", "-in", f("tls.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("tls.pem"), "-days", "2", "-extfile", f("san.ext")]);
    ca = { file: f("ca.pem"), pem: await readFile(f("ca.pem"), "utf8") };
    tlsYaml = `  tls:\n    certificate: ${f("tls.pem")}\n    key: ${f("tls.key")}`;
  }
  const scheme = opts.tls ? "https" : "http";
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
    tlsYaml,
    authYaml,
  ].join("\n"));
  let out = "";
  const proc = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-20000)));
  proc.stderr!.on("data", (d: Buffer) => (out = (out + d.toString()).slice(-20000)));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  try {
    await waitHttp(`${scheme}://${host}/v2/`, proc, () => out, ca?.pem);
  } catch (err) {
    proc.kill("SIGKILL");
    await token?.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host,
    url: `${scheme}://${host}`,
    caFile: ca?.file,
    ca: ca?.pem,
    dir,
    tokenUrl: token?.url,
    tokenRequests: seen,
    pushAuth,
    issueToken,
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
