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

test("monitorProbablyAlive: a conmon read from /proc is then checked by signal 0; a gone one is noticed at once; other processes are no monitor", async () => {
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
    assert.equal(await rts.monitorProbablyAlive(process.pid), false, "node is not conmon");
    assert.equal(await rts.monitorProbablyAlive(child.pid!), true);
    assert.equal(await rts.monitorProbablyAlive(child.pid!), true, "the signal-0 path");
    child.kill("SIGKILL");
    await exited;
    assert.equal(await rts.monitorProbablyAlive(child.pid!), false, "reaped: no signal 0, /proc read again");
    assert.equal(await rts.monitorAlive(child.pid!), false);
  } finally {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
});
