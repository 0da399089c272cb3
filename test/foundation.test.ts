// The daemon, its config and the RuntimeService info RPCs, against a real berthd.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { connectCri } from "../src/cri/client.js";
import { CgroupDriver } from "../src/gen/api.js";
import { REPO, runBerthd, startBerthd, type Berthd } from "./harness/berthd.js";
import { crictlArgs } from "./harness/crictl.js";

const PKG = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")) as { version: string };

describe("berthd serving the CRI", () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd({ config: `cgroup_driver = "systemd"\n` });
  });
  after(async () => {
    await d.cleanup();
  });

  test("Version names berth, its package version and API v1", async () => {
    const v = await d.cri.runtime.version({ version: "v1" });
    assert.equal(v.runtimeName, "berth");
    assert.equal(v.runtimeVersion, PKG.version);
    assert.equal(v.runtimeApiVersion, "v1");
  });

  test("socket is mode 0660", async () => {
    assert.equal((await stat(d.socket)).mode & 0o777, 0o660);
  });

  test("Status: RuntimeReady from runc, NetworkReady false with an empty CNI dir, true once a config appears", async () => {
    let s = await d.cri.runtime.status({});
    const cond = (t: string) => s.status!.conditions.find((c) => c.type === t)!;
    assert.equal(cond("RuntimeReady").status, true);
    assert.equal(cond("NetworkReady").status, false);
    assert.match(cond("NetworkReady").message, /no CNI network config/);
    assert.deepEqual(s.info, {});
    await writeFile(path.join(d.dir, "cni", "10-test.conflist"), JSON.stringify({
      cniVersion: "1.0.0", name: "t", plugins: [{ type: "bridge" }, { type: "no-such-plugin-xyz" }],
    }));
    await new Promise((r) => setTimeout(r, 2100));
    s = await d.cri.runtime.status({});
    assert.equal(cond("NetworkReady").status, false);
    assert.match(cond("NetworkReady").message, /no-such-plugin-xyz/);
    await writeFile(path.join(d.dir, "cni", "10-test.conflist"), JSON.stringify({
      cniVersion: "1.0.0", name: "t", plugins: [{ type: "bridge" }, { type: "loopback" }],
    }));
    await new Promise((r) => setTimeout(r, 2100));
    s = await d.cri.runtime.status({ verbose: true });
    assert.equal(cond("NetworkReady").status, true);
    const cfg = JSON.parse(s.info.config!);
    assert.equal(cfg.socket, d.socket);
    assert.equal(cfg.cgroup_driver, "systemd");
    assert.ok(s.runtimeHandlers.some((h) => h.name === "runc"));
  });

  test("RuntimeConfig reports the configured cgroup driver", async () => {
    const r = await d.cri.runtime.runtimeConfig({});
    assert.equal(r.linux!.cgroupDriver, CgroupDriver.SYSTEMD);
  });

  test("UpdateRuntimeConfig records the pod CIDR and rejects garbage", async () => {
    await d.cri.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "10.88.0.0/16" } } });
    const s = await d.cri.runtime.status({ verbose: true });
    assert.equal(JSON.parse(s.info.config!).pod_cidr, "10.88.0.0/16");
    await assert.rejects(
      d.cri.runtime.updateRuntimeConfig({ runtimeConfig: { networkConfig: { podCidr: "not a cidr" } } }),
      (err: { code: number; details: string }) => err.code === status.INVALID_ARGUMENT && /pod_cidr/.test(err.details),
    );
  });

  test("a second berthd on the same socket is refused", async () => {
    const r = await runBerthd(["--config", d.configFile]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /another berthd \(pid \d+\) is serving/);
    // and the first one still answers
    assert.equal((await d.cri.runtime.version({})).runtimeName, "berth");
  });
});

describe("RPCs not implemented yet answer UNIMPLEMENTED naming the RPC", () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd();
  });
  after(async () => {
    await d.cleanup();
  });
  test("a request that is not a valid protobuf message is INVALID_ARGUMENT, and berthd keeps serving", async () => {
    const { credentials, makeGenericClientConstructor, Metadata } = await import("@grpc/grpc-js");
    const raw = (b: Buffer) => b;
    const Ctor = makeGenericClientConstructor({
      version: { path: "/runtime.v1.RuntimeService/Version", requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
    } as never, "x");
    const c = new Ctor(`unix://${d.socket}`, credentials.createInsecure()) as unknown as { version: Function; close(): void };
    const err = await new Promise<{ code: number; details: string }>((resolve) =>
      c.version(Buffer.from([0x0a, 0xff, 0xff, 0xff]), new Metadata(), {}, (e: { code: number; details: string }) => resolve(e)));
    c.close();
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /Version: the request is not a valid protobuf message/);
    assert.equal((await d.cri.runtime.version({})).runtimeName, "berth");
  });

  test("CheckpointContainer", async () => {
    await assert.rejects(d.cri.runtime.checkpointContainer({ containerId: "x" }), (err: { code: number; details: string }) =>
      err.code === status.UNIMPLEMENTED && /CheckpointContainer/.test(err.details));
  });
});

describe("daemon lifecycle", () => {
  test("a stale socket and lock file are replaced; SIGTERM exits 0 and removes the socket", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-test-"));
    try {
      const socket = path.join(dir, "berth.sock");
      await writeFile(socket, "stale");
      await writeFile(`${socket}.lock`, "999999\n");
      const d = await startBerthd({ dir });
      try {
        assert.ok((await stat(socket)).isSocket());
        const c = connectCri(socket);
        assert.equal((await c.runtime.version({})).runtimeName, "berth");
        c.close();
        assert.equal(await d.stop("SIGTERM"), 0);
        await assert.rejects(stat(socket), /ENOENT/);
        await assert.rejects(stat(`${socket}.lock`), /ENOENT/);
      } finally {
        await d.cleanup();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("config", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-cfg-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("--help and --version", async () => {
    const h = await runBerthd(["--help"]);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--cni-conf-dir/);
    const v = await runBerthd(["--version"]);
    assert.equal(v.stdout.trim(), `berthd ${PKG.version}`);
  });

  test("unknown key is a startup error naming the key and file", async () => {
    const f = path.join(dir, "unknown.toml");
    await writeFile(f, `[image]\npause_imag = "x"\n`);
    const r = await runBerthd(["config", "--config", f]);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(f), r.stderr);
    assert.match(r.stderr, /unknown key "image\.pause_imag"/);
  });

  test("wrong type is a startup error naming the key", async () => {
    const f = path.join(dir, "type.toml");
    await writeFile(f, `[stream]\nport = "80"\n`);
    const r = await runBerthd(["config", "--config", f]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /key "stream\.port" must be a number/);
    await writeFile(f, `cgroup_driver = "cgroupv3"\n`);
    const r2 = await runBerthd(["config", "--config", f]);
    assert.match(r2.stderr, /cgroup_driver.*one of cgroupfs, systemd/);
  });

  test("drop-ins apply in name order and flags override files", async () => {
    const sub = path.join(dir, "layered");
    await mkdir(path.join(sub, "berth.d"), { recursive: true });
    const f = path.join(sub, "berth.toml");
    await writeFile(f, `log_level = "warn"\n[image]\npause_image = "a/pause:1"\n`);
    await writeFile(path.join(sub, "berth.d", "20-b.toml"), `[image]\npause_image = "b/pause:2"\n[image.mirrors]\n"docker.io" = ["http://127.0.0.1:5000"]\n`);
    await writeFile(path.join(sub, "berth.d", "10-a.toml"), `[image]\npause_image = "c/pause:3"\n`);
    await writeFile(path.join(sub, "berth.d", "ignored.txt"), `garbage = true\n`);
    const r = await runBerthd(["config", "--config", f, "--root", "/srv/berth", "--log-level", "debug"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^root = "\/srv\/berth"$/m);
    assert.match(r.stdout, /^log_level = "debug"$/m);
    assert.match(r.stdout, /pause_image = "b\/pause:2"/);
    assert.match(r.stdout, /"docker.io" = \[ "http:\/\/127.0.0.1:5000" \]/);
  });

  test("a missing --config file is an error", async () => {
    const r = await runBerthd(["config", "--config", path.join(dir, "nope.toml")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no such config file/);
  });
});

describe("HTTP/2 clients that send the socket path as :authority (gRPC-Go before 1.51)", () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd();
  });
  after(async () => {
    await d.cleanup();
  });

  test("a Version call with :authority = socket path succeeds over the real socket", async () => {
    const http2 = await import("node:http2");
    const net = await import("node:net");
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(d.socket) });
    try {
      const req = session.request({
        ":method": "POST",
        ":authority": d.socket,
        ":path": "/runtime.v1.RuntimeService/Version",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      const trailers = new Promise<Record<string, unknown>>((resolve) => req.on("trailers", resolve));
      req.end(Buffer.from([0, 0, 0, 0, 0]));
      const t = await trailers;
      assert.equal(t["grpc-status"], "0");
      assert.match(Buffer.concat(chunks).toString("latin1"), /berth/);
    } finally {
      session.close();
    }
  });

  test("crictl (CRICTL, e.g. cri-tools v1.26.1) version and info", { skip: !process.env.CRICTL && "set CRICTL to a crictl binary" }, async () => {
    const { execFile } = await import("node:child_process");
    const run = (args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(process.env.CRICTL!, [...crictlArgs(d.socket), ...args], (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))));
    const v = await run(["version"]);
    assert.match(v, /RuntimeName:\s+berth/);
    assert.match(v, /RuntimeApiVersion:\s+v1/);
    const info = JSON.parse(await run(["info"]));
    assert.deepEqual(info.status.conditions.map((c: { type: string }) => c.type), ["RuntimeReady", "NetworkReady"]);
  });
});
