// Registry authentication: WWW-Authenticate challenges and the credentials kubelet passes in
// a PullImageRequest's AuthConfig. Pure functions; the token fetch lives in registry.ts.
import { InvalidArgument } from "../errors.js";
import type { RegistryAuth } from "./types.js";

export interface Challenge {
  scheme: "bearer" | "basic" | string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header: `Bearer realm="…",service="…",scope="…"` (several challenges allowed). */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re = /\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)/y;
  const param = /\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/y;
  let pos = 0;
  while (pos < header.length) {
    re.lastIndex = pos;
    const m = re.exec(header);
    if (!m) break;
    pos = re.lastIndex;
    const params: Record<string, string> = {};
    for (;;) {
      param.lastIndex = pos;
      const p = param.exec(header);
      if (!p) break;
      // A bare token after a comma starts the next challenge, not a parameter.
      params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
      pos = param.lastIndex;
    }
    out.push({ scheme: m[1]!.toLowerCase(), params });
    while (header[pos] === "," || header[pos] === " ") pos++;
  }
  return out;
}

export interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

/** Normalizes an AuthConfig's server_address to a registry domain ("https://index.docker.io/v1/" -> "docker.io"). */
export function serverDomain(address: string): string {
  let a = address.trim().replace(/^[a-z]+:\/\//i, "");
  a = a.split("/")[0]!;
  if (a === "index.docker.io" || a === "registry-1.docker.io") return "docker.io";
  return a.toLowerCase();
}

/**
 * The credentials to use for `domain`, or undefined when none were given or they were given
 * for another registry (they must never be sent to a host they were not meant for).
 */
export function credentialsFor(auth: RegistryAuth | undefined, domain: string): Credentials | undefined {
  if (!auth) return undefined;
  if (auth.serverAddress && serverDomain(auth.serverAddress) !== domain.toLowerCase()) return undefined;
  const c: Credentials = {};
  if (auth.username || auth.password) {
    c.username = auth.username ?? "";
    c.password = auth.password ?? "";
  } else if (auth.auth) {
    const decoded = Buffer.from(auth.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new InvalidArgument("auth.auth must be base64 of \"username:password\"");
    c.username = decoded.slice(0, colon);
    c.password = decoded.slice(colon + 1);
  }
  if (auth.identityToken) c.identityToken = auth.identityToken;
  if (auth.registryToken) c.registryToken = auth.registryToken;
  return Object.keys(c).length > 0 ? c : undefined;
}
