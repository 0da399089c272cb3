// Pending streaming requests, keyed by single-use random tokens: a token is good for one
// connection within its time to live, and at most `capacity` requests wait at once.
import { randomBytes } from "node:crypto";
import { ResourceExhausted } from "../errors.js";
import type { StreamRequest } from "./types.js";

export const TOKEN_TTL_MS = 60_000;
export const MAX_PENDING = 1000;

interface Entry {
  request: StreamRequest;
  expires: number;
}

export class RequestCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs = TOKEN_TTL_MS,
    private readonly capacity = MAX_PENDING,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Stores the request and returns its token; ResourceExhausted when `capacity` are pending. */
  insert(request: StreamRequest): string {
    this.evictExpired();
    if (this.entries.size >= this.capacity) {
      throw new ResourceExhausted(`too many pending streaming requests (${this.capacity}); each expires ${this.ttlMs / 1000}s after it is made`);
    }
    // 128 random bits, URL-safe: unguessable, and never reused while an entry lives.
    let token: string;
    do token = randomBytes(16).toString("base64url");
    while (this.entries.has(token));
    this.entries.set(token, { request, expires: this.now() + this.ttlMs });
    return token;
  }

  /** The request for token, removed so the token cannot be used again; undefined when unknown, used or expired. */
  consume(token: string): StreamRequest | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    this.entries.delete(token);
    return e.expires > this.now() ? e.request : undefined;
  }

  private evictExpired(): void {
    const now = this.now();
    // Map iteration follows insertion order, which is expiry order: stop at the first live entry.
    for (const [token, e] of this.entries) {
      if (e.expires > now) break;
      this.entries.delete(token);
    }
  }
}
