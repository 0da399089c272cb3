import assert from "node:assert/strict";
import { test } from "node:test";
import { credentialsFor, parseChallenges, serverDomain } from "./auth.js";

test("WWW-Authenticate challenges parse", () => {
  const table: Array<[string, Array<{ scheme: string; params: Record<string, string> }>]> = [
    ['Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"',
      [{ scheme: "bearer", params: { realm: "https://auth.example/token", service: "registry.example", scope: "repository:a/b:pull" } }]],
    ['Basic realm="Registry Realm"', [{ scheme: "basic", params: { realm: "Registry Realm" } }]],
    ["Bearer realm=http://x/t, service=reg", [{ scheme: "bearer", params: { realm: "http://x/t", service: "reg" } }]],
    ['Bearer realm="a\\"b",error="invalid_token"', [{ scheme: "bearer", params: { realm: 'a"b', error: "invalid_token" } }]],
    ['Basic realm="r", Bearer realm="t"', [{ scheme: "basic", params: { realm: "r" } }, { scheme: "bearer", params: { realm: "t" } }]],
    ["Basic", [{ scheme: "basic", params: {} }]],
  ];
  for (const [input, want] of table) assert.deepEqual(parseChallenges(input), want, input);
});

test("credentials come from AuthConfig fields and stay with their server", () => {
  assert.deepEqual(credentialsFor({ username: "u", password: "p" }, "r.example"), { username: "u", password: "p" });
  assert.deepEqual(credentialsFor({ auth: Buffer.from("u:p:x").toString("base64") }, "r.example"), { username: "u", password: "p:x" });
  assert.deepEqual(credentialsFor({ identityToken: "tok" }, "r.example"), { identityToken: "tok" });
  assert.deepEqual(credentialsFor({ registryToken: "rt" }, "r.example"), { registryToken: "rt" });
  assert.equal(credentialsFor({ username: "u", password: "p", serverAddress: "other.example" }, "r.example"), undefined);
  assert.deepEqual(credentialsFor({ username: "u", password: "p", serverAddress: "https://r.example/v2/" }, "r.example"), { username: "u", password: "p" });
  assert.equal(credentialsFor({}, "r.example"), undefined);
  assert.equal(serverDomain("https://index.docker.io/v1/"), "docker.io");
  assert.throws(() => credentialsFor({ auth: Buffer.from("nocolon").toString("base64") }, "x"), /username:password/);
});
