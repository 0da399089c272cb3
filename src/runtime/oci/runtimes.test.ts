import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultConfig } from "../../config.js";
import { InvalidArgument } from "../../errors.js";
import { StateLayout } from "../../layout.js";
import { execProcess } from "./runc.js";
import { OciRuntimes } from "./runtimes.js";

test("one runtime object per handler; an unconfigured handler is InvalidArgument", async () => {
  const c = defaultConfig();
  c.state = "/tmp/berth-oci-test";
  c.runtime.handlers.other = { path: "runc", root: "/tmp/berth-oci-test/other" };
  const rts = new OciRuntimes(c, new StateLayout(c));
  const a = await rts.get("");
  assert.equal(a, await rts.get("runc"), "the default handler and its name give the same object");
  assert.equal(a.handler, "runc");
  assert.ok(a.binary.startsWith("/"), "the binary is resolved to an absolute path (conmon needs one)");
  assert.equal(a.root, "/tmp/berth-oci-test/runtime/runc");
  assert.equal((await rts.get("other")).root, "/tmp/berth-oci-test/other");
  await assert.rejects(rts.get("nope"), (err: unknown) => err instanceof InvalidArgument && /"nope" is not configured \(known: runc, other\)/.test((err as Error).message));
});

test("the exec process keeps the container's settings, with a console size only for a sized terminal", () => {
  const base = { terminal: false, user: { uid: 1, gid: 2 }, args: ["sleep"], env: ["A=1"], cwd: "/w", capabilities: {}, noNewPrivileges: true, oomScoreAdj: 5 } as Parameters<typeof execProcess>[0];
  assert.deepEqual(execProcess(base, ["ls"]), { ...base, args: ["ls"] });
  assert.deepEqual(execProcess(base, ["sh"], true, { height: 24, width: 80 }), { ...base, args: ["sh"], terminal: true, consoleSize: { height: 24, width: 80 } });
  assert.equal(execProcess(base, ["sh"], true, { height: 0, width: 0 }).consoleSize, undefined);
  assert.deepEqual(base.args, ["sleep"], "the base is not changed");
});

test("watchMonitor: a live conmon is watched and its death reported; other processes and gone pids get no watch", async () => {
  const { spawn } = await import("node:child_process");
  const { copyFile, mkdtemp, rm } = await import("node:fs/promises");
  const os = await import("node:os");
  const path = await import("node:path");
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-monitor-"));
  const c = defaultConfig();
  c.state = dir;
  const rts = new OciRuntimes(c, new StateLayout(c));
  // A process whose comm is "conmon" (what isConmon reads), without being one.
  const fake = path.join(dir, "conmon");
  await copyFile("/bin/sleep", fake);
  const child = spawn(fake, ["60"], { stdio: "ignore" });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    let gone = 0;
    assert.equal(rts.watchMonitor(process.pid, () => gone++), undefined, "node is not conmon");
    assert.equal(await rts.monitorAlive(child.pid!), true);
    assert.ok(rts.watchMonitor(child.pid!, () => gone++));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(gone, 0, "not while it runs");
    child.kill("SIGKILL");
    await exited;
    for (let i = 0; i < 100 && gone === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(gone, 1, "its death is reported once");
    assert.equal(rts.watchMonitor(child.pid!, () => gone++), undefined, "reaped: nothing to watch");
    assert.equal(await rts.monitorAlive(child.pid!), false);
  } finally {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
});
