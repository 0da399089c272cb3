// Registry authentication end to end: a real docker-registry behind htpasswd Basic auth or
// behind the harness's token server, pulled from through berthd's real gRPC socket with the
// AuthConfig fields kubelet sends (username/password, auth, identity_token, registry_token).
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { startBerthd, type Berthd } from "./harness/berthd.js";
import { pushImage, type PushedImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";

type GrpcErr = { code: number; details: string };

/** Asserts a rejection with `code` whose details match `re` and contain none of `secrets`. */
function refused(code: status, re: RegExp, secrets: string[] = []) {
  return (e: GrpcErr) => {
    assert.equal(e.code, code, e.details);
    assert.match(e.details, re);
    for (const s of secrets) assert.ok(!e.details.includes(s), `the error does not carry the secret: ${e.details}`);
    return true;
  };
}

describe("htpasswd (Basic auth) registry", () => {
  const password = "b4sic-Secret-pw";
  let reg: TestRegistry;
  let d: Berthd;
  let img: PushedImage;
  before(async () => {
    reg = await startRegistry({ htpasswd: { carol: password } });
    img = await pushImage(reg, "basic/app", { layers: [{ entries: [{ path: "b", content: "basic" }] }] });
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("the registry really demands Basic auth", async () => {
    const res = await fetch(`${reg.url}/v2/`);
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Basic realm="berth-test-realm"/);
  });

  test("no credentials: UNAUTHENTICATED saying a username and password are needed", async () => {
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/basic/app` } }),
      refused(status.UNAUTHENTICATED, /requires a username and password \(Basic auth\) and none were given/));
  });

  test("wrong password: UNAUTHENTICATED naming the rejection, the password in no message or log", async () => {
    const wrong = "not-the-Right-one";
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/basic/app` }, auth: { username: "carol", password: wrong } }),
      refused(status.UNAUTHENTICATED, /rejected the credentials/, [wrong, password]));
    await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/basic/app` }, auth: { username: "mallory", password } }),
      refused(status.UNAUTHENTICATED, /rejected the credentials/, [password]));
    assert.ok(!d.logs().includes(wrong) && !d.logs().includes(password), "no secret in berthd's log");
  });

  test("right credentials pull, as username/password and as base64 auth", async () => {
    assert.equal((await d.cri.image.pullImage({ image: { image: `${reg.host}/basic/app` }, auth: { username: "carol", password } })).imageRef, img.id);
    await d.cri.image.removeImage({ image: { image: img.id } });
    const auth = Buffer.from(`carol:${password}`).toString("base64");
    assert.equal((await d.cri.image.pullImage({ image: { image: `${reg.host}/basic/app` }, auth: { auth, serverAddress: `http://${reg.host}` } })).imageRef, img.id);
    const logs = d.logs();
    assert.ok(!logs.includes(password) && !logs.includes(auth), "no secret in berthd's log");
    await d.cri.image.removeImage({ image: { image: img.id } });
  });
});

describe("token registry: identity_token and registry_token", () => {
  const refreshToken = `rt-${"d4ve".repeat(6)}`;
  let reg: TestRegistry;
  let d: Berthd;
  let img: PushedImage;
  const image = () => ({ image: `${reg.host}/tok/app` });
  before(async () => {
    reg = await startRegistry({ tokenAuth: { users: { dave: { password: "dave-pw-unused", repos: ["tok/app"] } }, refreshTokens: { [refreshToken]: "dave" } } });
    img = await pushImage(reg, "tok/app", { layers: [{ entries: [{ path: "t", content: "tokens" }] }] });
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("identity_token: an OAuth2 refresh-token POST to the realm gets the pull token", async () => {
    const n = reg.tokenRequests.length;
    assert.equal((await d.cri.image.pullImage({ image: image(), auth: { identityToken: refreshToken } })).imageRef, img.id);
    const seen = reg.tokenRequests.slice(n);
    assert.ok(seen.length > 0 && seen.every((t) => t.grant === "refresh_token" && t.user === "dave" && t.granted), JSON.stringify(seen));
    assert.ok(seen.some((t) => t.scope === "repository:tok/app:pull"));
    assert.ok(!d.logs().includes(refreshToken), "the identity token is in no log line");
    await d.cri.image.removeImage({ image: { image: img.id } });
  });

  test("a wrong identity_token is UNAUTHENTICATED naming the token server's refusal", async () => {
    const wrong = `rt-${"bad0".repeat(6)}`;
    await assert.rejects(d.cri.image.pullImage({ image: image(), auth: { identityToken: wrong } }),
      refused(status.UNAUTHENTICATED, /token server .* refused a token for the identity token: HTTP 400 \(invalid_grant/, [wrong]));
    assert.ok(!d.logs().includes(wrong));
  });

  test("registry_token: used directly as the Bearer token, the token server never asked", async () => {
    const token = reg.issueToken("dave", "repository:tok/app:pull");
    const n = reg.tokenRequests.length;
    assert.equal((await d.cri.image.pullImage({ image: image(), auth: { registryToken: token } })).imageRef, img.id);
    assert.deepEqual(reg.tokenRequests.slice(n), [], "no token request: the given token was used as it is");
    assert.ok(!d.logs().includes(token), "the registry token is in no log line");
    await d.cri.image.removeImage({ image: { image: img.id } });
  });

  test("a registry_token the registry refuses (garbage, or scoped to another repository) is UNAUTHENTICATED", async () => {
    const n = reg.tokenRequests.length;
    for (const wrong of ["not-a-jwt-at-all", reg.issueToken("dave", "repository:other/app:pull")]) {
      await assert.rejects(d.cri.image.pullImage({ image: image(), auth: { registryToken: wrong } }),
        refused(status.UNAUTHENTICATED, /the registry rejected the credentials/, [wrong]));
      assert.ok(!d.logs().includes(wrong));
    }
    assert.deepEqual(reg.tokenRequests.slice(n), []);
  });
});

/** An HTTP server on `address` that records every request's path and Authorization header. */
async function startRecorder(address: string, handle: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const seen: Array<{ method: string; url: string; authorization: string | undefined }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization });
    handle(req, res);
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  return {
    host: `${address}:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
type Recorder = Awaited<ReturnType<typeof startRecorder>>;

/** Forwards a request to `target`, headers (Authorization included) as they came unless `headers` replaces them. */
function forward(target: string, req: http.IncomingMessage, res: http.ServerResponse, headers = req.headers): void {
  const up = http.request(`${target}${req.url}`, { method: req.method, headers: { ...headers, host: new URL(target).host } }, (ur) => {
    res.writeHead(ur.statusCode ?? 502, ur.headers);
    ur.pipe(res);
  });
  up.on("error", () => res.destroy());
  req.pipe(up);
}

describe("credentials stay with their registry: mirrors and redirects to another host", () => {
  const password = "m1rror-Never-sees-this";
  let reg: TestRegistry;
  let img: PushedImage;
  let mirror: Recorder;
  let front: Recorder;
  let blobHost: Recorder;
  let mirrorMode: "404" | "401" = "404";
  let d: Berthd;
  before(async () => {
    reg = await startRegistry({ htpasswd: { carol: password } });
    img = await pushImage(reg, "basic/app", { layers: [{ entries: [{ path: "m", content: "mirrored?" }] }] });
    // A mirror that has nothing (404) or wants its own login (401): either way berth falls back to the upstream.
    mirror = await startRecorder("127.0.0.1", (req, res) => {
      if (mirrorMode === "401") {
        res.writeHead(401, { "www-authenticate": 'Basic realm="mirror"', "content-type": "application/json" });
        return res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "mirror login" }] }));
      }
      if (req.url === "/v2/") return res.end("{}");
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "mirror has nothing" }] }));
    });
    // Blob storage on another host (127.0.0.2): it fetches the blob from the registry with its own login.
    const own = `Basic ${Buffer.from(`${reg.pushAuth!.username}:${reg.pushAuth!.password}`).toString("base64")}`;
    blobHost = await startRecorder("127.0.0.2", (req, res) => forward(reg.url, req, res, { authorization: own }));
    // The registry berth is given: the real one, except that blob GETs are redirected to the blob host, as
    // registries backed by object storage do (docker-registry's filesystem driver cannot redirect).
    front = await startRecorder("127.0.0.1", (req, res) => {
      if (req.method === "GET" && /\/blobs\/sha256:/.test(req.url ?? "") && req.headers.authorization) {
        res.writeHead(307, { location: `http://${blobHost.host}${req.url}` });
        return res.end();
      }
      forward(reg.url, req, res);
    });
    d = await startBerthd({ config: `[image.mirrors]\n"${reg.host}" = ["http://${mirror.host}"]\n` });
  });
  after(async () => {
    await d?.cleanup();
    for (const s of [front, blobHost, mirror]) await s?.close();
    await reg?.stop();
  });

  for (const mode of ["404", "401"] as const) {
    test(`a mirror answering ${mode} is asked without the upstream's credentials; the upstream gets them`, async () => {
      mirrorMode = mode;
      mirror.seen.length = 0;
      const r = await d.cri.image.pullImage({ image: { image: `${reg.host}/basic/app` }, auth: { username: "carol", password, serverAddress: reg.host } });
      assert.equal(r.imageRef, img.id);
      assert.ok(mirror.seen.length > 0, "the mirror was tried first");
      assert.deepEqual(mirror.seen.filter((s) => s.authorization !== undefined), [], "no Authorization header ever reached the mirror");
      assert.ok(!d.logs().includes(password));
      await d.cri.image.removeImage({ image: { image: img.id } });
    });
  }

  test("a blob redirect to another host is followed without the Authorization header", async () => {
    const r = await d.cri.image.pullImage({ image: { image: `${front.host}/basic/app` }, auth: { username: "carol", password } });
    assert.equal(r.imageRef, img.id);
    const blobs = blobHost.seen.filter((s) => /\/blobs\//.test(s.url));
    assert.equal(blobs.length, 2, `the config and the layer came from the blob host: ${JSON.stringify(blobHost.seen.map((s) => s.url))}`);
    assert.deepEqual(blobHost.seen.filter((s) => s.authorization !== undefined), [], "no Authorization header reached the other host");
    assert.ok(front.seen.some((s) => /\/manifests\//.test(s.url) && s.authorization?.startsWith("Basic ")), "the registry itself got the credentials");
    await d.cri.image.removeImage({ image: { image: img.id } });
  });
});

describe("unreachable registries", () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
  });

  test("connection refused is UNAVAILABLE naming the host, after the retries", async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const s = http.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await assert.rejects(d.cri.image.pullImage({ image: { image: `127.0.0.1:${port}/gone/app:1` } }),
      refused(status.UNAVAILABLE, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`)));
    assert.match(d.logs(), /retrying registry request/);
  });

  test("a host that does not resolve is UNAVAILABLE naming the host", async () => {
    await assert.rejects(d.cri.image.pullImage({ image: { image: "no-such-registry.invalid/app:1" } }),
      refused(status.UNAVAILABLE, /cannot resolve the registry host "no-such-registry\.invalid" \(E[A-Z_]+\)/));
  });

  test("a token realm that cannot be reached is UNAVAILABLE naming the token host", async () => {
    const realm = await startRecorder("127.0.0.1", (_req, res) => res.end());
    const closedRealm = `http://${realm.host}/token`;
    await realm.close();
    const reg = await startRecorder("127.0.0.1", (_req, res) => {
      res.writeHead(401, { "www-authenticate": `Bearer realm="${closedRealm}",service="s"`, "content-type": "application/json" });
      res.end("{}");
    });
    try {
      await assert.rejects(d.cri.image.pullImage({ image: { image: `${reg.host}/app:1` } }),
        refused(status.UNAVAILABLE, new RegExp(`cannot reach http://${realm.host}: connect ECONNREFUSED`)));
    } finally {
      await reg.close();
    }
  });
});

describe("a registry with a private CA (image.ca_files)", () => {
  let reg: TestRegistry;
  let img: PushedImage;
  const berthds: Berthd[] = [];
  before(async () => {
    reg = await startRegistry({ tls: true });
    img = await pushImage(reg, "tls/app", { layers: [{ entries: [{ path: "s", content: "secure" }] }] });
  });
  after(async () => {
    for (const d of berthds) await d.cleanup();
    await reg?.stop();
  });
  // berth reaches loopback registries over http, so the https registry is named as an explicit https mirror.
  const start = async (caFiles: string[]) => {
    const d = await startBerthd({ config: `[image]\nca_files = ${JSON.stringify(caFiles)}\n[image.mirrors]\n"registry.example" = ["${reg.url}"]\n` });
    berthds.push(d);
    return d;
  };
  const image = { image: "registry.example/tls/app" };

  test("the registry really serves https only", async () => {
    assert.match(reg.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const plain = await fetch(`http://${reg.host}/v2/`);
    assert.equal(plain.status, 400);
    assert.match(await plain.text(), /HTTP request to an HTTPS server/);
  });

  test("without its CA, the certificate is refused with a message pointing at image.ca_files", async () => {
    const d = await start([]);
    await assert.rejects(d.cri.image.pullImage({ image }), (e: GrpcErr) => {
      assert.match(e.details, new RegExp(`TLS certificate of 127\\.0\\.0\\.1:\\d+ is not trusted .*image\\.ca_files`));
      return true;
    });
  });

  test("with the CA in image.ca_files, the pull verifies the certificate and succeeds", async () => {
    const d = await start([reg.caFile!]);
    assert.equal((await d.cri.image.pullImage({ image })).imageRef, img.id);
  });

  test("an unreadable CA file is FAILED_PRECONDITION naming it", async () => {
    const d = await start(["/nonexistent/berth-ca.pem"]);
    await assert.rejects(d.cri.image.pullImage({ image }), refused(status.FAILED_PRECONDITION, /image\.ca_files: cannot read \/nonexistent\/berth-ca\.pem/));
  });
});
