// `make install` into a DESTDIR: the installed berthd (from DESTDIR's lib/berth, a private
// root/state/socket) runs a pod and a container; systemd-analyze accepts the unit; `make
// uninstall` removes exactly what was installed. Bridge bn1, 10.201.1.0/24.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { BERTHD_ENV, REPO, startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const run = promisify(execFile);
const BRIDGE = "bn1";
const SUBNET = "10.201.1.0/24";
const PREFIX = "/usr/local";

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  }
  return out.sort();
}

describe("make install into a DESTDIR", () => {
  let dest: string;
  let installOut: string;
  before(async () => {
    dest = await mkdtemp(path.join(tmpdir(), "berth-install-"));
    // A crictl.yaml already there must be left alone by install and by uninstall.
    await mkdir(path.join(dest, "etc"));
    await writeFile(path.join(dest, "etc/crictl.yaml"), "runtime-endpoint: unix:///run/other.sock\n");
    // install-files: `make install` without its build step (this suite runs from the built dist/).
    installOut = (await run("make", ["-s", "-C", REPO, "install-files", `DESTDIR=${dest}`, `PREFIX=${PREFIX}`], { env: BERTHD_ENV })).stdout;
  });
  after(async () => rm(dest, { recursive: true, force: true }));

  test("the daemon, launcher, unit and default config are in place; an existing crictl.yaml is kept", async () => {
    assert.match(installOut, /installed berth in /);
    const lib = path.join(dest, PREFIX, "lib/berth");
    for (const f of ["bin/berthd", "dist/src/main.js", "dist/native/berth_native.node", "dist/native/berth-exec", "node_modules/@grpc/grpc-js/package.json", "node_modules/pino/package.json", "package.json"]) {
      assert.ok((await stat(path.join(lib, f))).isFile(), f);
    }
    assert.ok(!(await filesUnder(path.join(lib, "dist"))).some((f) => f.includes(".test.") || f.startsWith("test/")), "no tests installed");
    assert.ok(!(await stat(path.join(lib, "node_modules/typescript")).then(() => true, () => false)), "no dev packages installed");
    assert.match(await readFile(path.join(dest, PREFIX, "bin/berthd"), "utf8"), new RegExp(`exec "${PREFIX}/lib/berth/bin/berthd" "\\$@"`));
    const unit = await readFile(path.join(dest, PREFIX, "lib/systemd/system/berth.service"), "utf8");
    assert.match(unit, new RegExp(`^ExecStart=${PREFIX}/bin/berthd$`, "m"));
    for (const line of ["Type=notify", "KillMode=process", "Delegate=yes", "Restart=always", "TasksMax=infinity", "LimitNOFILE=1048576", "After=network-online.target local-fs.target"]) {
      assert.match(unit, new RegExp(`^${line}$`, "m"));
    }
    const { stdout: defaults } = await run(path.join(lib, "bin/berthd"), ["config", "--default"], { env: BERTHD_ENV });
    assert.equal(await readFile(path.join(dest, "etc/berth/berth.toml"), "utf8"), defaults);
    assert.equal(await readFile(path.join(dest, "etc/crictl.yaml"), "utf8"), "runtime-endpoint: unix:///run/other.sock\n");
  });

  test("systemd-analyze verify accepts the unit (ExecStart pointed at the DESTDIR launcher)", async () => {
    const template = await readFile(path.join(REPO, "deploy/berth.service.in"), "utf8");
    const unitDir = await mkdtemp(path.join(tmpdir(), "berth-unit-"));
    try {
      const unit = path.join(unitDir, "berth.service");
      await writeFile(unit, template.replaceAll("@BINDIR@", path.join(dest, PREFIX, "bin")).replaceAll("@LIBDIR@", path.join(dest, PREFIX, "lib/berth")));
      const r = await run("systemd-analyze", ["verify", "--man=no", unit]).then((x) => ({ code: 0, ...x }), (e: { code: number; stdout: string; stderr: string }) => e);
      // verify exits 0 on a key it cannot parse (it ignores it with a warning): no output at all is the pass.
      assert.equal(r.code, 0, r.stderr);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), "");
      // And it does catch a broken unit, so the check above means something.
      await writeFile(unit, template.replaceAll("@BINDIR@", "/nonexistent").replaceAll("@LIBDIR@", "/nonexistent"));
      const bad = await run("systemd-analyze", ["verify", "--man=no", unit]).then((x) => ({ code: 0, ...x }), (e: { code: number; stdout: string; stderr: string }) => e);
      assert.match(`${bad.stdout}${bad.stderr}`, /nonexistent\/berthd/);
    } finally {
      await rm(unitDir, { recursive: true, force: true });
    }
  });

  describe("the installed berthd", () => {
    let reg: TestRegistry;
    let d: Berthd;
    let work: string;
    before(async () => {
      reg = await startRegistry();
      await pushImage(reg, "install/busybox", { layers: [{ entries: await busyboxEntries() }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
      work = await mkdtemp(path.join(tmpdir(), "berth-installed-"));
      await writeBridgeConflist(work, BRIDGE, SUBNET);
      d = await startBerthd({ dir: work, berthd: path.join(dest, PREFIX, "lib/berth/bin/berthd"), config: `[cni]\nplugin_timeout = "20s"\n` });
    });
    after(async () => {
      await d?.cleanup({ removePods: true });
      await reg?.stop();
      await deleteBridge(BRIDGE);
    });

    test("runs a pod and a container, and ExecSync reaches it (the addon and berth-exec from lib/berth)", async () => {
      assert.match(d.logs(), /berthd serving/);
      const cmdline = (await readFile(`/proc/${d.proc.pid}/cmdline`, "utf8")).split("\0");
      assert.ok(cmdline.some((a) => a.startsWith(path.join(dest, PREFIX, "lib/berth/"))), cmdline.join(" "));
      await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
      const image = `${reg.host}/install/busybox:1`;
      await d.cri.image.pullImage({ image: { image } });
      const cfg = podConfig("installed");
      const { podSandboxId } = await d.cri.runtime.runPodSandbox({ config: cfg as never });
      const pod = (await d.cri.runtime.podSandboxStatus({ podSandboxId })).status!;
      assert.match(pod.network!.ip, /^10\.201\.1\./);
      const { containerId } = await d.cri.runtime.createContainer({
        podSandboxId, sandboxConfig: cfg as never,
        config: { metadata: { name: "sleeper" }, image: { image }, command: ["sleep", "300"], logPath: "sleeper.log" } as never,
      });
      await d.cri.runtime.startContainer({ containerId });
      const r = await d.cri.runtime.execSync({ containerId, cmd: ["echo", "from the installed berthd"], timeout: 10n });
      assert.equal(r.exitCode, 0);
      assert.equal(Buffer.from(r.stdout).toString(), "from the installed berthd\n");
      await d.cri.runtime.stopPodSandbox({ podSandboxId });
      await d.cri.runtime.removePodSandbox({ podSandboxId });
    });
  });

  test("make uninstall removes exactly what install wrote (files it did not write stay)", async () => {
    const manifest = (await readFile(path.join(dest, PREFIX, "lib/berth/install-manifest"), "utf8")).trim().split("\n");
    assert.ok(manifest.includes(`file ${PREFIX}/bin/berthd`));
    assert.ok(manifest.some((l) => /^conf [0-9a-f]{64} \/etc\/berth\/berth\.toml$/.test(l)));
    assert.ok(!manifest.some((l) => l.endsWith("/etc/crictl.yaml")), "the crictl.yaml install did not write is not its to remove");
    await writeFile(path.join(dest, "usr/local/bin/not-berth"), "someone else's\n");
    await run("make", ["-s", "-C", REPO, "uninstall", `DESTDIR=${dest}`, `PREFIX=${PREFIX}`], { env: BERTHD_ENV });
    assert.deepEqual(await filesUnder(dest), ["etc/crictl.yaml", "usr/local/bin/not-berth"]);
  });
});
