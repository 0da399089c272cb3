// A client for the OCI distribution API: mirrors then the upstream host, Bearer and Basic
// auth, redirects, retries with backoff, and a no-progress timeout on every response.
import { readFile } from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import tls from "node:tls";
import { status } from "../grpc/status.js";
import { codeOf, DeadlineExceeded, FailedPrecondition, NotFound, Unauthenticated, Unavailable, wrap } from "../errors.js";
import type { Logger } from "../log.js";
import { parseChallenges, type Credentials } from "./auth.js";
import { MANIFEST_ACCEPT, MT } from "./manifest.js";
import { isLoopbackRegistry, registryHost, type Reference } from "./reference.js";

export interface RegistryOptions {
  insecureRegistries: string[];
  /** domain -> mirror base URLs ("http://127.0.0.1:5000"), tried in order before the domain itself. */
  mirrors: Record<string, string[]>;
  progressTimeoutMs: number;
  log: Logger;
  userAgent: string;
  /** Extra PEM CA bundles trusted (besides the system's) for https registries, mirrors and token realms: image.ca_files. */
  caFiles?: string[];
}

const MAX_REDIRECTS = 10;
const RETRIES = 4;
const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });

const caAgents = new Map<string, Promise<https.Agent>>();

/** The https agent trusting the system CAs plus `caFiles`, built once per list of files. */
function httpsAgentFor(caFiles: string[] | undefined): Promise<https.Agent> {
  if (!caFiles || caFiles.length === 0) return Promise.resolve(httpsAgent);
  const key = caFiles.join("\0");
  let agent = caAgents.get(key);
  if (!agent) {
    agent = Promise.all(caFiles.map((f) => readFile(f, "utf8").catch((err: Error) => {
      throw new FailedPrecondition(`image.ca_files: cannot read ${f}: ${err.message}`);
    }))).then((pems) => new https.Agent({ keepAlive: true, maxSockets: 16, ca: [...tls.rootCertificates, ...pems] }));
    agent.catch(() => caAgents.delete(key));
    caAgents.set(key, agent);
  }
  return agent;
}

/** Drops the agents built from image.ca_files, so the next pull reads the files again (a reload). */
export function forgetCaBundles(): void {
  caAgents.clear();
}

/** Errors worth another attempt: resets, refused connections, 5xx and 429. */
export class RetryableError extends Error {}

interface Endpoint {
  /** scheme://host[:port][/prefix], no trailing slash. */
  base: string;
  mirror: boolean;
  creds?: Credentials;
  authorization?: string;
}

function retryableNetError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code ?? "";
  return ["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EAI_AGAIN", "ENETUNREACH", "EHOSTUNREACH", "ECONNABORTED", "UND_ERR_SOCKET", "ERR_STREAM_PREMATURE_CLOSE"].includes(code);
}

/** Aborts `res` when no byte arrives for `ms`; the error names the URL. */
export function watchProgress(res: IncomingMessage, ms: number, url: string): void {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => res.destroy(new DeadlineExceeded(`no data from ${url} for ${Math.round(ms / 1000)}s (image.pull_progress_timeout)`)), ms);
  };
  arm();
  res.on("data", arm);
  res.once("close", () => clearTimeout(timer));
  res.once("end", () => clearTimeout(timer));
}

const TLS_TRUST_ERRORS = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_[A-Z_]+|ERR_TLS_CERT_ALTNAME_INVALID)$/;

/**
 * A host berth cannot resolve or connect to is UNAVAILABLE naming the host (the errno stays the
 * cause, so withRetries still retries it); a certificate berth does not trust is FAILED_PRECONDITION
 * pointing at image.ca_files; any other error passes through unchanged.
 */
export function connectError(u: URL, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException)?.code ?? "";
  if (TLS_TRUST_ERRORS.test(code)) {
    return new FailedPrecondition(`the TLS certificate of ${u.host} is not trusted (${(err as Error).message}): add the CA that signed it to image.ca_files`, { cause: err });
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_FAIL" || code === "EAI_NONAME") {
    return new Unavailable(`cannot resolve the registry host "${u.hostname}" (${code}): check the image name and the host's DNS`, { cause: err });
  }
  if (["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ECONNABORTED", "EPIPE"].includes(code)) {
    return new Unavailable(`cannot reach ${u.protocol === "https:" ? "https" : "http"}://${u.host}: ${(err as Error).message}`, { cause: err });
  }
  return err;
}

interface RawRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
  /** The agent for https URLs (system CAs plus image.ca_files). */
  tlsAgent: https.Agent;
}

/** One HTTP exchange with redirects followed; Authorization is dropped when a redirect leaves the origin (scheme and host). */
async function send(req: RawRequest): Promise<{ res: IncomingMessage; url: string }> {
  let url = req.url;
  let headers = { ...req.headers };
  const origin = new URL(url).origin;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const r = mod.request(u, { method: req.method, headers, agent: u.protocol === "https:" ? req.tlsAgent : httpAgent }, (res) => {
        // From here the body's own no-progress watch (watchProgress) takes over.
        r.setTimeout(0);
        resolve(res);
      });
      r.setTimeout(req.timeoutMs, () => r.destroy(new DeadlineExceeded(`no response from ${u.origin}${u.pathname} for ${Math.round(req.timeoutMs / 1000)}s (image.pull_progress_timeout)`)));
      r.once("error", (err) => reject(connectError(u, err)));
      r.end(req.body);
    });
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
      res.resume();
      url = new URL(res.headers.location, url).toString();
      if (new URL(url).origin !== origin) {
        const { authorization: _drop, ...rest } = headers;
        headers = rest;
      }
      continue;
    }
    return { res, url };
  }
  throw new Error(`more than ${MAX_REDIRECTS} redirects from ${req.url}`);
}

async function readCapped(res: IncomingMessage, cap: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > cap) {
      res.destroy();
      throw new FailedPrecondition(`${what} is larger than ${cap} bytes`);
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

async function errorText(res: IncomingMessage): Promise<string> {
  const body = await readCapped(res, 64 * 1024, "error body").catch(() => Buffer.alloc(0));
  try {
    const doc = JSON.parse(body.toString("utf8")) as { errors?: Array<{ code?: string; message?: string }>; error?: string; error_description?: string; details?: string };
    if (Array.isArray(doc.errors) && doc.errors.length > 0) return doc.errors.map((e) => `${e.code ?? ""} ${e.message ?? ""}`.trim()).join("; ");
    // Token servers answer in OAuth2's words (RFC 6749 5.2) or docker's {"details": …}.
    if (typeof doc.error === "string") return doc.error_description ? `${doc.error}: ${doc.error_description}` : doc.error;
    if (typeof doc.details === "string") return doc.details;
  } catch { /* not JSON */ }
  return body.toString("utf8").slice(0, 200).trim();
}

export async function withRetries<T>(what: string, log: Logger, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      let retry = false;
      for (let cur: unknown = err, depth = 0; cur instanceof Error && depth < 10 && !retry; cur = cur.cause, depth++) {
        retry = cur instanceof RetryableError || retryableNetError(cur);
      }
      if (!retry || attempt >= RETRIES) throw err;
      const delay = 200 * 2 ** (attempt - 1);
      log.info({ what, attempt, delayMs: delay, err: (err as Error).message }, "retrying registry request");
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Refuses a Docker schema 1 manifest before any digest check: its Docker-Content-Digest covers the
 * payload without the signatures, so a digest comparison would misreport it as corrupt.
 */
function refuseSchema1(bytes: Buffer, contentType: string | undefined, url: string): void {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  let v1 = type === MT.dockerSchema1 || type === MT.dockerSchema1Signed;
  if (!v1) {
    try {
      v1 = (JSON.parse(bytes.toString("utf8")) as { schemaVersion?: unknown } | null)?.schemaVersion === 1;
    } catch { /* not JSON: parseManifest says so */ }
  }
  if (v1) throw new FailedPrecondition(`${url}: the image uses a Docker schema 1 manifest, which berth does not support (deprecated since 2017): rebuild or re-push it with a current tool`);
}

export interface FetchedManifest {
  bytes: Buffer;
  contentType: string | undefined;
  /** Docker-Content-Digest as the registry sent it, if it did. */
  headerDigest: string | undefined;
}

/** Talks to one repository, on the first endpoint (mirror or upstream) that serves its manifest. */
export class RepositorySession {
  private readonly endpoints: Endpoint[];
  private chosen: Endpoint | undefined;

  constructor(private readonly ref: Reference, creds: Credentials | undefined, private readonly opts: RegistryOptions) {
    const mirrors = (opts.mirrors[ref.domain] ?? []).map((m) => ({ base: m.replace(/\/+$/, "").replace(/\/v2$/, ""), mirror: true }));
    for (const m of mirrors) if (!/^https?:\/\//.test(m.base)) m.base = `https://${m.base}`;
    const scheme = isLoopbackRegistry(ref.domain) || opts.insecureRegistries.includes(ref.domain) ? "http" : "https";
    // Credentials belong to the upstream host only; mirrors are asked anonymously.
    this.endpoints = [...mirrors, { base: `${scheme}://${registryHost(ref.domain)}`, mirror: false, creds }];
  }

  private get log(): Logger {
    return this.opts.log;
  }

  /** A request to one endpoint with the auth dance: on 401, answer the challenge once and retry. */
  private async request(ep: Endpoint, method: string, apiPath: string, accept: string | undefined): Promise<IncomingMessage> {
    const url = `${ep.base}/v2/${this.ref.path}/${apiPath}`;
    return withRetries(`${method} ${url}`, this.log, async () => {
      for (let round = 0; round < 2; round++) {
        const headers: Record<string, string> = { "user-agent": this.opts.userAgent };
        if (accept) headers.accept = accept;
        if (ep.authorization) headers.authorization = ep.authorization;
        const { res } = await send({ method, url, headers, timeoutMs: this.opts.progressTimeoutMs, tlsAgent: await httpsAgentFor(this.opts.caFiles) });
        const status = res.statusCode ?? 0;
        if (status === 401 && round === 0) {
          const challenge = res.headers["www-authenticate"];
          res.resume();
          ep.authorization = await this.authorize(ep, typeof challenge === "string" ? challenge : "", url);
          continue;
        }
        if (status >= 200 && status < 300) return res;
        const text = await errorText(res);
        if (status === 401 || status === 403) {
          throw new Unauthenticated(`${url}: ${status} ${ep.creds ? "the registry rejected the credentials" : "the registry requires credentials"}${text ? ` (${text})` : ""}`);
        }
        if (status === 404) throw new NotFound(`${url}: not found${text ? ` (${text})` : ""}`);
        if (status >= 500 || status === 429 || status === 408) throw new RetryableError(`${url}: HTTP ${status}${text ? ` (${text})` : ""}`);
        throw new FailedPrecondition(`${url}: HTTP ${status}${text ? ` (${text})` : ""}`);
      }
      throw new Unauthenticated(`${url}: still unauthorized after authenticating`);
    });
  }

  /** Answers a WWW-Authenticate challenge with an Authorization header value. */
  private async authorize(ep: Endpoint, header: string, url: string): Promise<string> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const creds = ep.creds;
    if (bearer) {
      if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
      const realm = bearer.params.realm;
      if (!realm || !/^https?:\/\//.test(realm)) throw new Unauthenticated(`${url}: Bearer challenge without a usable realm`);
      const service = bearer.params.service;
      const scope = bearer.params.scope ?? `repository:${this.ref.path}:pull`;
      return `Bearer ${await this.fetchToken(realm, service, scope, creds)}`;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      if (!creds?.username && !creds?.password) throw new Unauthenticated(`${url}: the registry requires a username and password (Basic auth) and none were given`);
      return `Basic ${Buffer.from(`${creds.username ?? ""}:${creds.password ?? ""}`).toString("base64")}`;
    }
    throw new Unauthenticated(`${url}: 401 with no challenge berth can answer (${header || "no WWW-Authenticate"})`);
  }

  private async fetchToken(realm: string, service: string | undefined, scope: string, creds: Credentials | undefined): Promise<string> {
    const headers: Record<string, string> = { "user-agent": this.opts.userAgent, accept: "application/json" };
    let method = "GET";
    let body: string | undefined;
    const u = new URL(realm);
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant, as docker does with an identity token.
      method = "POST";
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: creds.identityToken, client_id: "berth", scope });
      if (service) form.set("service", service);
      body = form.toString();
      headers["content-type"] = "application/x-www-form-urlencoded";
    } else {
      if (service) u.searchParams.set("service", service);
      u.searchParams.set("scope", scope);
      if (creds?.username || creds?.password) headers.authorization = `Basic ${Buffer.from(`${creds.username ?? ""}:${creds.password ?? ""}`).toString("base64")}`;
    }
    const who = creds?.username ? ` for user "${creds.username}"` : creds?.identityToken ? " for the identity token" : " (anonymous)";
    return withRetries(`token ${u.origin}${u.pathname}`, this.log, async () => {
      const { res } = await send({ method, url: u.toString(), headers, body, timeoutMs: this.opts.progressTimeoutMs, tlsAgent: await httpsAgentFor(this.opts.caFiles) });
      const status = res.statusCode ?? 0;
      if (status >= 500) throw new RetryableError(`token server ${u.origin}${u.pathname}: HTTP ${status}`);
      if (status < 200 || status >= 300) {
        const text = await errorText(res);
        throw new Unauthenticated(`token server ${u.origin}${u.pathname} refused a token${who}: HTTP ${status}${text ? ` (${text})` : ""}`);
      }
      const doc = JSON.parse((await readCapped(res, 1 << 20, "token response")).toString("utf8")) as { token?: string; access_token?: string };
      const token = doc.token ?? doc.access_token;
      if (!token) throw new Unauthenticated(`token server ${u.origin}${u.pathname} answered without a token`);
      return token;
    });
  }

  /** Pings /v2/ on an endpoint to learn its auth challenge before the first real request. */
  private async ping(ep: Endpoint): Promise<void> {
    if (ep.authorization) return;
    const { res } = await send({ method: "GET", url: `${ep.base}/v2/`, headers: { "user-agent": this.opts.userAgent }, timeoutMs: this.opts.progressTimeoutMs, tlsAgent: await httpsAgentFor(this.opts.caFiles) });
    res.resume();
    const status = res.statusCode ?? 0;
    if (status === 401) {
      const challenge = res.headers["www-authenticate"];
      ep.authorization = await this.authorize(ep, typeof challenge === "string" ? challenge : "", `${ep.base}/v2/`);
    } else if (status >= 500) {
      throw new RetryableError(`${ep.base}/v2/: HTTP ${status}`);
    }
  }

  /** Fetches a manifest by tag or digest from the first endpoint that has it. */
  async manifest(reference: string): Promise<FetchedManifest> {
    const errors: string[] = [];
    let mirrorsSaidNotFound = false;
    const list = this.chosen ? [this.chosen, ...this.endpoints.filter((e) => e !== this.chosen)] : this.endpoints;
    for (const ep of list) {
      try {
        await withRetries(`ping ${ep.base}`, this.log, () => this.ping(ep));
        const res = await this.request(ep, "GET", `manifests/${reference}`, MANIFEST_ACCEPT);
        watchProgress(res, this.opts.progressTimeoutMs, `${ep.base}/v2/${this.ref.path}/manifests/${reference}`);
        const bytes = await readCapped(res, 4 << 20, "manifest");
        refuseSchema1(bytes, res.headers["content-type"], `${ep.base}/v2/${this.ref.path}/manifests/${reference}`);
        const digestHeader = res.headers["docker-content-digest"];
        this.chosen ??= ep;
        return { bytes, contentType: res.headers["content-type"], headerDigest: typeof digestHeader === "string" ? digestHeader : undefined };
      } catch (err) {
        if (!ep.mirror) {
          if (errors.length === 0) throw err;
          const wrapped = wrap(`mirrors failed (${errors.join("; ")}); upstream`, err);
          // A mirror that answered "no such manifest" outranks an upstream that cannot be reached.
          if (mirrorsSaidNotFound && (codeOf(err) === status.INTERNAL || codeOf(err) === status.UNAVAILABLE)) throw new NotFound(wrapped.message, { cause: err });
          throw wrapped;
        }
        if (err instanceof NotFound) mirrorsSaidNotFound = true;
        errors.push(`${ep.base}: ${(err as Error).message}`);
        this.log.info({ mirror: ep.base, ref: reference, err: (err as Error).message }, "mirror failed; trying the next endpoint");
      }
    }
    throw new Error("no registry endpoint");
  }

  /** Opens a blob on the endpoint that served the manifest (falling back to upstream). */
  async blob(digest: string): Promise<IncomingMessage> {
    const { res, start } = await this.openBlob(digest);
    start();
    return res;
  }

  /**
   * Opens a blob and leaves its body unread: a layer waiting for a download slot has its request
   * and the registry's first byte behind it already. The no-progress watch starts with start().
   */
  async openBlob(digest: string): Promise<{ res: IncomingMessage; start: () => void }> {
    const ep = this.chosen ?? this.endpoints[this.endpoints.length - 1]!;
    const opened = (on: Endpoint, res: IncomingMessage) => ({ res, start: () => watchProgress(res, this.opts.progressTimeoutMs, `${on.base}/v2/${this.ref.path}/blobs/${digest}`) });
    try {
      return opened(ep, await this.request(ep, "GET", `blobs/${digest}`, undefined));
    } catch (err) {
      const upstream = this.endpoints[this.endpoints.length - 1]!;
      if (ep === upstream) throw err;
      this.log.info({ mirror: ep.base, digest, err: (err as Error).message }, "blob not served by mirror; trying upstream");
      return opened(upstream, await this.request(upstream, "GET", `blobs/${digest}`, undefined));
    }
  }

  /** A small blob (config), read whole with a cap. */
  async smallBlob(digest: string, cap: number): Promise<Buffer> {
    return withRetries(`blob ${digest}`, this.log, async () => readCapped(await this.blob(digest), cap, `blob ${digest}`));
  }
}
