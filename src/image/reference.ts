// Image references as kubelet users write them, normalized the way containerd and docker do:
// `busybox` is docker.io/library/busybox:latest; a digest pins the reference and wins over a tag.
import { InvalidArgument } from "../errors.js";

export const DEFAULT_DOMAIN = "docker.io";

export interface Reference {
  /** Registry host, with :port when one was given ("docker.io", "127.0.0.1:5000"). */
  domain: string;
  /** Repository path inside the registry ("library/busybox"). */
  path: string;
  /** Tag, absent when the reference is pinned by digest. */
  tag?: string;
  /** "sha256:<hex>" when given. */
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_PART = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*$/;
const IPV6 = /^\[[0-9a-fA-F:.]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
export const DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_NAME = 255;

function invalid(ref: string, why: string): InvalidArgument {
  return new InvalidArgument(`invalid image reference "${ref}": ${why}`);
}

/** Parses and normalizes a reference; throws InvalidArgument naming what is wrong. */
export function parseReference(ref: string): Reference {
  if (ref === "") throw invalid(ref, "empty");
  if (ref.trim() !== ref || /\s/.test(ref)) throw invalid(ref, "contains whitespace");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) throw invalid(ref, `digest "${digest}" is not algorithm:hex`);
    if (!digest.startsWith("sha256:")) throw invalid(ref, `digest algorithm "${digest.split(":")[0]}" is not supported (only sha256)`);
    if (!DIGEST.test(digest)) throw invalid(ref, `digest "${digest}" must be sha256: followed by 64 lowercase hex digits`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(ref, `tag "${tag}" must be 1-128 of [A-Za-z0-9_.-], not starting with . or -`);
  }
  if (rest === "") throw invalid(ref, "no repository name");
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase()) {
      domain = first;
      path = rest.slice(slash + 1);
      checkDomain(ref, domain);
    }
  }
  if (domain === "index.docker.io") domain = DEFAULT_DOMAIN;
  for (const c of path.split("/")) {
    if (c === "") throw invalid(ref, "empty path component");
    if (c !== c.toLowerCase()) throw invalid(ref, "repository name must be lowercase");
    if (!COMPONENT.test(c)) throw invalid(ref, `path component "${c}" may only hold a-z, 0-9 and single separators . _ __ -`);
  }
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = `library/${path}`;
  if (domain.length + 1 + path.length > MAX_NAME) throw invalid(ref, `name longer than ${MAX_NAME} characters`);
  if (digest !== undefined) return { domain, path, digest };
  return { domain, path, tag: tag ?? "latest" };
}

function checkDomain(ref: string, domain: string): void {
  let host = domain;
  const m = /^(.*?)(?::(\d+))?$/.exec(domain)!;
  if (!domain.startsWith("[")) host = m[1]!;
  else {
    const end = domain.indexOf("]");
    host = domain.slice(0, end + 1);
    const port = domain.slice(end + 1);
    if (port !== "" && !/^:\d+$/.test(port)) throw invalid(ref, `registry "${domain}" has a bad port`);
    if (!IPV6.test(host)) throw invalid(ref, `registry "${domain}" is not a host`);
    return;
  }
  if (m[2] !== undefined && Number(m[2]) > 65535) throw invalid(ref, `registry port ${m[2]} is out of range`);
  if (!DOMAIN_PART.test(host)) throw invalid(ref, `registry "${domain}" is not a host[:port]`);
}

/** "domain/path" */
export function repoName(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

/** The normalized reference: name:tag or name@digest. */
export function formatReference(r: Reference): string {
  return r.digest ? `${repoName(r)}@${r.digest}` : `${repoName(r)}:${r.tag ?? "latest"}`;
}

/** The host berth dials for a reference's domain (Docker Hub's API host differs from its name). */
export function registryHost(domain: string): string {
  return domain === DEFAULT_DOMAIN ? "registry-1.docker.io" : domain;
}

/** Registries spoken to over plain http without being listed as insecure: loopback only. */
export function isLoopbackRegistry(domain: string): boolean {
  const host = domain.startsWith("[") ? domain.slice(0, domain.indexOf("]") + 1) : domain.replace(/:\d+$/, "");
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
