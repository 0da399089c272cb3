// Concurrency of pod RPCs against a real berthd: calls on different pods overlap, calls on one
// pod serialize, and a RunPodSandbox whose caller gave up (deadline) finishes or rolls back,
// its retry with the same name getting the pod or a clean new attempt, never a stuck name.
// A tracing CNI plugin (a shell script chained after the real bridge plugin) records when
// each ADD/DEL runs and can be made slow or failing. Network: bridge brel1, 10.94.1.0/24.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PodSandboxState } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { forceRemoveDir, podProblems, strayFiles } from "./recovery-check.js";
import { bridgePorts, deleteBridge, podConfig, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "brel1";
const SUBNET = "10.94.1.0/24";

interface Span { cmd: string; id: string; start: number; end: number }

describe("concurrent pod RPCs and abandoned creates", () => {
  let d: Berthd;
  let dir: string;
  let ctl: string;

  const setDelay = (s: number) => writeFile(path.join(ctl, "delay"), String(s));
  const setFail = (on: boolean) => (on ? writeFile(path.join(ctl, "fail"), "1") : rm(path.join(ctl, "fail"), { force: true }));
  async function spans(): Promise<Span[]> {
    const text = await readFile(path.join(ctl, "trace"), "utf8").catch(() => "");
    const open = new Map<string, number>();
    const out: Span[] = [];
    for (const line of text.split("\n").filter(Boolean)) {
      const [what, cmd, id, ts] = line.split(" ");
      const key = `${cmd} ${id}`;
      if (what === "start") open.set(key, Number(ts));
      else out.push({ cmd: cmd!, id: id!, start: open.get(key)!, end: Number(ts) });
    }
    return out;
  }
  const removeAll = async () => {
    for (const p of (await d.cri.runtime.listPodSandbox({})).items) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: p.id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: p.id });
    }
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-conc-"));
    ctl = path.join(dir, "ctl");
    await mkdir(ctl);
    await mkdir(path.join(dir, "bin"));
    const plugin = path.join(dir, "bin", "berth-trace");
    await writeFile(plugin, `#!/bin/sh
# Chained CNI plugin for tests: logs start/end of each call, sleeps ctl/delay seconds, fails ADD when ctl/fail existed at its start.
in=$(cat)
ctl=${ctl}
now() { date +%s%N; }
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'; exit 0 ;;
esac
fail=; [ -e $ctl/fail ] && fail=1
echo "start $CNI_COMMAND $CNI_CONTAINERID $(now)" >> $ctl/trace
sleep "$(cat $ctl/delay 2>/dev/null || echo 0)"
echo "end $CNI_COMMAND $CNI_CONTAINERID $(now)" >> $ctl/trace
if [ "$CNI_COMMAND" = ADD ]; then
  if [ -n "$fail" ]; then echo '{"cniVersion":"1.0.0","code":999,"msg":"berth-trace fails on purpose"}'; exit 1; fi
  printf '%s' "$in" | jq -c '.prevResult'
fi
exit 0
`);
    await chmod(plugin, 0o755);
    await writeBridgeConflist(dir, BRIDGE, SUBNET, [{ type: "berth-trace" }]);
    d = await startBerthd({ dir, config: `[cni]\nbin_dirs = ["${path.join(dir, "bin")}", "/usr/lib/cni"]\nplugin_timeout = "30s"\n` });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
  });

  after(async () => {
    if (d) {
      await setFail(false).catch(() => undefined);
      await setDelay(0).catch(() => undefined);
      await removeAll().catch(() => undefined);
      await d.cleanup();
    }
    await forceRemoveDir(dir);
    await deleteBridge(BRIDGE);
  });

  test("RunPodSandbox on different pods runs in parallel; Stop/Remove racing on one pod serialize (one CNI DEL)", async () => {
    await setDelay(0.6);
    const ids = await Promise.all([1, 2, 3].map(async (i) => (await d.cri.runtime.runPodSandbox({ config: podConfig(`par-${i}`) })).podSandboxId));
    const adds = (await spans()).filter((s) => s.cmd === "ADD" && ids.includes(s.id));
    assert.equal(adds.length, 3);
    assert.ok(Math.max(...adds.map((s) => s.start)) < Math.min(...adds.map((s) => s.end)), `the three ADDs overlap: ${JSON.stringify(adds)}`);

    // three calls on one pod at once: all succeed, the attachment is deleted exactly once
    const one = ids[0]!;
    await Promise.all([
      d.cri.runtime.stopPodSandbox({ podSandboxId: one }),
      d.cri.runtime.stopPodSandbox({ podSandboxId: one }),
      d.cri.runtime.removePodSandbox({ podSandboxId: one }),
    ]);
    const dels = (await spans()).filter((s) => s.cmd === "DEL" && s.id === one);
    assert.equal(dels.length, 1, `one DEL for the pod: ${JSON.stringify(dels)}`);
    // the other two, removed in parallel: their DELs overlap
    await Promise.all(ids.slice(1).map((id) => d.cri.runtime.removePodSandbox({ podSandboxId: id })));
    const otherDels = (await spans()).filter((s) => s.cmd === "DEL" && ids.slice(1).includes(s.id));
    assert.equal(otherDels.length, 2);
    assert.ok(Math.max(...otherDels.map((s) => s.start)) < Math.min(...otherDels.map((s) => s.end)), "DELs of different pods overlap");
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
    await setDelay(0);
  });

  test("a caller that gives up mid-create: the create finishes and the retry with the same name gets that pod", async () => {
    await setDelay(1.5);
    const cfg = podConfig("impatient");
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: cfg }, { timeoutMs: 300 }), (e: { code: number }) => e.code === status.DEADLINE_EXCEEDED);
    // kubelet's retry arrives while the first create is still running
    const id = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    const list = (await d.cri.runtime.listPodSandbox({})).items.filter((p) => p.metadata!.name === "impatient");
    assert.deepEqual(list.map((p) => p.id), [id], "one pod, handed to the retry");
    assert.equal(list[0]!.state, PodSandboxState.SANDBOX_READY);
    assert.equal((await spans()).filter((s) => s.cmd === "ADD" && s.id === id).length, 1, "made once");
    assert.match(d.logs(), /waiting for it/);
    // once delivered, the name is taken like any other
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: cfg }), (e: { code: number; details: string }) => e.code === status.ALREADY_EXISTS && e.details.includes(id));

    // the retry comes after the abandoned create finished: it is handed the pod too
    const late = podConfig("late");
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: late }, { timeoutMs: 300 }), (e: { code: number }) => e.code === status.DEADLINE_EXCEEDED);
    const made = await waitFor("the abandoned create to finish", async () =>
      (await d.cri.runtime.listPodSandbox({})).items.find((p) => p.metadata!.name === "late" && p.state === PodSandboxState.SANDBOX_READY), 20_000);
    assert.equal((await d.cri.runtime.runPodSandbox({ config: late })).podSandboxId, made.id);
    assert.match(d.logs(), /handing over the pod made for the caller that gave up/);
    // a request with a different config under that name is refused, naming the holder
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: { ...late, hostname: "other" } }), (e: { code: number; details: string }) => e.code === status.ALREADY_EXISTS && e.details.includes(made.id));
    await setDelay(0);
    await removeAll();
  });

  test("a caller that gives up on a create that then fails: it rolls back and the retry makes the pod afresh", async () => {
    await setDelay(1.0);
    await setFail(true);
    const cfg = podConfig("doomed-then-fine");
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: cfg }, { timeoutMs: 300 }), (e: { code: number }) => e.code === status.DEADLINE_EXCEEDED);
    await setFail(false);
    await setDelay(0);
    const id = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    const list = (await d.cri.runtime.listPodSandbox({})).items;
    assert.deepEqual(list.map((p) => p.id), [id]);
    assert.equal(list[0]!.state, PodSandboxState.SANDBOX_READY);
    assert.match(d.logs(), /berth-trace fails on purpose/);
    assert.equal((await bridgePorts(BRIDGE)).length, 1, "the failed attempt's veth is gone");
    await removeAll();
    assert.deepEqual(await podProblems(d), []);
    assert.deepEqual(await strayFiles(d, []), []);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
  });
});
