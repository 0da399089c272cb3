// berthd as a node service: READY=1/STOPPING=1 to a NOTIFY_SOCKET the test binds, SIGHUP
// reloads (live keys apply, broken files are refused), and `berthd doctor` passing here and
// failing with the right line. Bridge bn2, 10.201.2.0/24.
import assert from "node:assert/strict";
import { closeSync, mkdirSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { bindDatagram, mountFs, recvDatagram, unmountFs } from "../src/native/native.js";
import { runBerthd, startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bn2";
const SUBNET = "10.201.2.0/24";

describe("systemd notification", () => {
  for (const kind of ["abstract", "path"] as const) {
    test(`READY=1 once the socket serves, STOPPING=1 on SIGTERM (${kind} NOTIFY_SOCKET)`, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "berth-notify-"));
      const notifySocket = kind === "abstract" ? `@berth-test-notify-${process.pid}` : path.join(dir, "notify.sock");
      const fd = bindDatagram(notifySocket);
      const got: Array<{ msg: string; socketServed: boolean }> = [];
      let polling = true;
      const poller = (async () => {
        while (polling) {
          for (let m = recvDatagram(fd); m !== null; m = recvDatagram(fd)) {
            got.push({ msg: m, socketServed: await stat(path.join(dir, "berth.sock")).then((s) => s.isSocket(), () => false) });
          }
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      let d: Berthd | undefined;
      try {
        d = await startBerthd({ dir, env: { NOTIFY_SOCKET: notifySocket } });
        await waitFor("READY=1", async () => got.some((g) => g.msg === "READY=1"));
        assert.deepEqual(got, [{ msg: "READY=1", socketServed: true }]);
        assert.equal((await d.cri.runtime.version({ version: "v1" })).runtimeName, "berth");
        assert.equal(await d.stop("SIGTERM"), 0);
        await waitFor("STOPPING=1", async () => got.some((g) => g.msg === "STOPPING=1"));
        assert.deepEqual(got.map((g) => g.msg), ["READY=1", "STOPPING=1"]);
      } finally {
        polling = false;
        await poller;
        closeSync(fd);
        await d?.cleanup();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

describe("SIGHUP reload", () => {
  let d: Berthd;
  let dir: string;
  const dropIn = () => path.join(dir, "berth.d", "50-test.toml");
  const logsSince = (mark: number) => d.logs().slice(mark);
  const rpcDebugLines = (text: string) => text.split("\n").filter((l) => l.includes('"level":20') && l.includes('"msg":"rpc"'));
  const hangup = async (expect: RegExp) => {
    const mark = d.logs().length;
    d.proc.kill("SIGHUP");
    await waitFor(`reload log ${expect}`, async () => expect.test(logsSince(mark)));
    return logsSince(mark);
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-reload-"));
    mkdirSync(path.join(dir, "berth.d"));
    // The harness's berth.toml says debug; the drop-in, read after it, says info.
    await writeFile(dropIn(), `log_level = "info"\n`);
    d = await startBerthd({ dir });
  });
  after(async () => {
    await d?.cleanup();
  });

  test("log_level: debug lines appear after a reload to debug, and stop after one to info", async () => {
    let mark = d.logs().length;
    await d.cri.runtime.version({ version: "v1" });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(rpcDebugLines(logsSince(mark)), []);

    await writeFile(dropIn(), `log_level = "debug"\n`);
    const out = await hangup(/config reloaded/);
    assert.match(out, /"applied":\["log_level"\]/);
    mark = d.logs().length;
    await d.cri.runtime.version({ version: "v1" });
    await waitFor("an rpc debug line", async () => rpcDebugLines(logsSince(mark)).length > 0);

    await writeFile(dropIn(), `log_level = "info"\n`);
    await hangup(/config reloaded/);
    mark = d.logs().length;
    await d.cri.runtime.version({ version: "v1" });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(rpcDebugLines(logsSince(mark)), []);
  });

  test("a broken file is refused, naming file and key, and the running config stays", async () => {
    await writeFile(dropIn(), `log_level = "debug"\n[image]\nmax_concurent_downloads = 4\n`);
    const out = await hangup(/config reload failed/);
    assert.match(out, /the running configuration is kept/);
    assert.ok(out.includes(`${dropIn()}: unknown key \\"image.max_concurent_downloads\\"`), out);
    // log_level = "debug" in the refused file did not apply.
    const mark = d.logs().length;
    await d.cri.runtime.version({ version: "v1" });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(rpcDebugLines(logsSince(mark)), []);

    await writeFile(dropIn(), `log_level = "info"\n[image]\nmax_concurrent_downloads = "four"\n`);
    assert.match(await hangup(/config reload failed/), /key \\"image.max_concurrent_downloads\\" must be a number/);
  });

  test("live image keys apply; other keys are reported as needing a restart", async () => {
    await writeFile(dropIn(), `log_level = "info"\n[image]\nmirrors = { "docker.io" = ["http://127.0.0.1:1"] }\npull_progress_timeout = "30s"\n[runtime]\ndefault_stop_timeout = 20\n`);
    const out = await hangup(/take effect only after a restart/);
    assert.match(out, /"applied":\["image.mirrors","image.pull_progress_timeout"\]/);
    assert.match(out, /"keys":\["runtime.default_stop_timeout"\]/);
    // The new mirror is what a pull now tries first (nothing listens on port 1).
    await assert.rejects(d.cri.image.pullImage({ image: { image: "docker.io/library/busybox:1" } }), (err: Error) => /127\.0\.0\.1:1/.test(err.message));
  });
});

describe("SIGHUP reload of the registry settings a pull uses", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let dir: string;
  let imageId: string;
  before(async () => {
    reg = await startRegistry({ tls: true });
    imageId = (await pushImage(reg, "reload/app", { layers: [{ entries: [{ path: "f", content: "reloaded" }] }] })).id;
    dir = await mkdtemp(path.join(tmpdir(), "berth-reload-reg-"));
    mkdirSync(path.join(dir, "berth.d"));
    d = await startBerthd({ dir });
  });
  after(async () => {
    await d?.cleanup();
    await reg?.stop();
  });

  test("a mirror and a CA file added by a reload are what the next pull uses", async () => {
    const image = { image: "registry.example/reload/app" };
    // No mirror yet: registry.example itself is asked (and does not resolve).
    await assert.rejects(d.cri.image.pullImage({ image }), (e: { details: string }) => /registry\.example/.test(e.details));
    // berth reaches loopback registries over http, so the https registry is named as an explicit https mirror.
    const mirror = `[image.mirrors]\n"registry.example" = ["${reg.url}"]\n`;
    const hangup = async () => {
      const mark = d.logs().length;
      d.proc.kill("SIGHUP");
      await waitFor("config reloaded", async () => d.logs().slice(mark).includes("config reloaded"));
    };
    await writeFile(path.join(dir, "berth.d", "50-reg.toml"), mirror);
    await hangup();
    await assert.rejects(d.cri.image.pullImage({ image }), (e: { details: string }) => /TLS certificate of 127\.0\.0\.1:\d+ is not trusted/.test(e.details));
    await writeFile(path.join(dir, "berth.d", "50-reg.toml"), `[image]\nca_files = ["${reg.caFile!}"]\n${mirror}`);
    await hangup();
    assert.equal((await d.cri.image.pullImage({ image })).imageRef, imageId);
  });
});

describe("berthd doctor", () => {
  let dir: string;
  let config: string;
  let cni: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-doctor-"));
    cni = path.dirname(await writeBridgeConflist(dir, BRIDGE, SUBNET));
    config = path.join(dir, "berth.toml");
    await writeFile(config, `root = "${dir}/root"\nstate = "${dir}/state"\nsocket = "${dir}/berth.sock"\n[cni]\nconf_dir = "${cni}"\n`);
  });
  after(async () => {
    await deleteBridge(BRIDGE);
    await rm(dir, { recursive: true, force: true });
  });

  const failLine = (out: string, name: string) => new RegExp(`^FAIL  ${name}: .*\\n      fix: .+$`, "m").exec(out)?.[0];

  test("passes on this host: exit 0, every check ok or informational", async () => {
    const r = await runBerthd(["doctor", "--config", config]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /a pod can run on this host/);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    for (const name of ["runtime handler \"runc\" \\(default\\)", "conmon", "cgroups", "overlayfs", "root", "state", "socket", "CNI network", "iptables", "seccomp"]) {
      assert.match(r.stdout, new RegExp(`^OK    ${name}: `, "m"), name);
    }
    const j = await runBerthd(["doctor", "--json", "--config", config]);
    assert.equal(j.code, 0);
    const parsed = JSON.parse(j.stdout) as { ok: boolean; checks: Array<{ name: string; status: string }> };
    assert.equal(parsed.ok, true);
    assert.ok(parsed.checks.some((c) => c.name === "AppArmor" && c.status === "info"));
  });

  test("conmon not on PATH: fails with the conmon line and its fix", async () => {
    // A PATH with every program of the usual folders except conmon (node too: it may share conmon's folder).
    const bin = path.join(dir, "path-without-conmon");
    await mkdir(bin);
    for (const d of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
      for (const name of await readdir(d).catch(() => [] as string[])) {
        if (name !== "conmon") await symlink(path.join(d, name), path.join(bin, name)).catch(() => undefined);
      }
    }
    await symlink(process.execPath, path.join(bin, "node")).catch(() => undefined);
    const r = await runBerthd(["doctor", "--config", config], { PATH: bin });
    assert.equal(r.code, 1, r.stdout);
    assert.match(failLine(r.stdout, "conmon") ?? "", /conmon "conmon" does not run: .*\n      fix: install conmon/);
    assert.match(r.stdout, /a pod cannot run on this host: 1 check failed/);
    const j = await runBerthd(["doctor", "--json", "--config", config], { PATH: bin });
    assert.equal(j.code, 1);
    assert.deepEqual((JSON.parse(j.stdout) as { checks: Array<{ name: string; status: string }> }).checks.filter((c) => c.status === "fail").map((c) => c.name), ["conmon"]);
  });

  test("an empty CNI conf dir: fails with the network line", async () => {
    const empty = path.join(dir, "cni-empty");
    await mkdir(empty);
    const r = await runBerthd(["doctor", "--config", config, "--cni-conf-dir", empty]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(failLine(r.stdout, "CNI network") ?? "", new RegExp(`no CNI network config found in ${empty}\\n      fix: put a network config in ${empty}`));
  });

  test("the root on a filesystem overlay refuses as upper layer (an overlay itself): fails with the overlayfs line", async () => {
    const ov = path.join(dir, "ov");
    for (const d of ["lower", "upper", "work", "merged"]) await mkdir(path.join(ov, d), { recursive: true });
    await mountFs({ source: "overlay", target: path.join(ov, "merged"), fstype: "overlay", data: "lowerdir=lower,upperdir=upper,workdir=work", cwd: ov });
    try {
      const r = await runBerthd(["doctor", "--config", config, "--root", path.join(ov, "merged", "root")]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(failLine(r.stdout, "overlayfs") ?? "", new RegExp(`the root ${ov}/merged/root is on overlay \\(${ov}/merged\\), where an overlay does not mount: .*\\n      fix: put root on a filesystem overlayfs takes`));
      assert.deepEqual((await readdir(path.join(ov, "merged"))), [], "the probe cleans up after itself");
    } finally {
      await unmountFs(path.join(ov, "merged"));
    }
  });

  test("a berthd already serving the socket is named by its pid (from <socket>.lock)", async () => {
    const d = await startBerthd();
    try {
      const r = await runBerthd(["doctor", "--config", config, "--socket", d.socket]);
      assert.equal(r.code, 0, r.stdout);
      assert.match(r.stdout, new RegExp(`^OK    socket: ${d.socket} is served by berthd pid ${d.proc.pid} `, "m"));
    } finally {
      await d.cleanup();
    }
  });

  test("a config error is the one failing line", async () => {
    const bad = path.join(dir, "bad.toml");
    await writeFile(bad, `log_level = "loud"\n`);
    const r = await runBerthd(["doctor", "--config", bad]);
    assert.equal(r.code, 1);
    assert.match(failLine(r.stdout, "config") ?? "", /key "log_level" must be one of/);
  });
});

