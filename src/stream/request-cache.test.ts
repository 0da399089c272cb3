import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ResourceExhausted } from "../errors.js";
import { MAX_PENDING, RequestCache, TOKEN_TTL_MS } from "./request-cache.js";
import type { StreamRequest } from "./types.js";

const req = (n: number): StreamRequest => ({ kind: "portforward", sandboxId: `s${n}`, ports: [n] });

describe("RequestCache", () => {
  test("defaults: one minute, 1000 pending", () => {
    assert.equal(TOKEN_TTL_MS, 60_000);
    assert.equal(MAX_PENDING, 1000);
  });

  test("a token is good once", () => {
    const c = new RequestCache();
    const t = c.insert(req(1));
    assert.match(t, /^[A-Za-z0-9_-]{22}$/);
    assert.deepEqual(c.consume(t), req(1));
    assert.equal(c.consume(t), undefined);
    assert.equal(c.consume("made-up"), undefined);
  });

  test("a token expires after its time to live", () => {
    let now = 1000;
    const c = new RequestCache(60_000, 10, () => now);
    const t = c.insert(req(1));
    now += 59_999;
    const t2 = c.insert(req(2));
    assert.deepEqual(c.consume(t2), req(2));
    now += 1;
    assert.equal(c.consume(t), undefined);
  });

  test("at most capacity pending; expired ones make room", () => {
    let now = 0;
    const c = new RequestCache(1000, 3, () => now);
    for (let i = 0; i < 3; i++) c.insert(req(i));
    assert.throws(() => c.insert(req(9)), (e) => e instanceof ResourceExhausted && /too many pending/.test(e.message));
    now = 1000;
    c.insert(req(9));
    assert.equal(c.size, 1);
  });

  test("tokens are distinct", () => {
    const c = new RequestCache();
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) seen.add(c.insert(req(i)));
    assert.equal(seen.size, 1000);
  });
});
