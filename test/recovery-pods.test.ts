// Crash recovery of pods: berthd is killed with a real SIGKILL (BERTH_FAULT_AT) at every
// step of RunPodSandbox, StopPodSandbox and RemovePodSandbox, restarted on the same dirs,
// and must then list only consistent pods that Stop/Remove can handle, keep a bystander
// pod working through every crash, and leak nothing. Also: corrupt records, orphans.
// Network: bridge brel0, 10.94.0.0/24.
import { status } from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PodSandboxState } from "../src/gen/api.js";
import { FAULT_POINTS } from "../src/faults.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { hostLeaks, type HostSnapshot } from "./harness/leaks.js";
import { forceRemoveDir, ownLeaks, podProblems, strayFiles, type PodInfo } from "./recovery-check.js";
import { bridgePorts, deleteBridge, filesUnder, iptablesRulesFor, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "brel0";
const SUBNET = "10.94.0.0/24";
const GATEWAY = "10.94.0.1";

const POD_POINTS = FAULT_POINTS.filter((p) => /^(Run|Stop|Remove)PodSandbox\./.test(p));

describe("pod recovery after kill -9", () => {
  let d: Berthd;
  let dir: string;
  let bystander: string;
  let baseline: HostSnapshot;
  let faultsSurvived = 0;

  const ipamAddresses = async () => (await filesUnder(path.join(dir, "ipam"))).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f));
  const podByName = async (name: string) => (await d.cri.runtime.listPodSandbox({})).items.find((p) => p.metadata!.name === name);
  const info = async (id: string) => JSON.parse((await d.cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true })).info.info!) as PodInfo;

  /** Everything berth should hold with only the bystander pod alive. */
  async function assertOnlyBystander(victims: string[]): Promise<void> {
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items.map((p) => p.id), [bystander]);
    assert.deepEqual(await strayFiles(d, [bystander]), []);
    assert.equal((await bridgePorts(BRIDGE)).length, 1, "only the bystander's veth is on the bridge");
    assert.equal((await ipamAddresses()).length, 1, "host-local holds only the bystander's address");
    assert.deepEqual(await iptablesRulesFor(victims), []);
    assert.deepEqual(ownLeaks(baseline, await hostLeaks(), dir), []);
    const s = await d.cri.runtime.podSandboxStatus({ podSandboxId: bystander, verbose: true });
    assert.equal(s.status!.state, PodSandboxState.SANDBOX_READY);
    const ping = await sh("nsenter", [`--net=${(JSON.parse(s.info.info!) as PodInfo).netNamespacePath}`, "busybox", "ping", "-c1", "-W3", GATEWAY]);
    assert.equal(ping.code, 0, `the bystander pod reaches its gateway: ${ping.stdout}${ping.stderr}`);
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-rec-"));
    await writeBridgeConflist(dir, BRIDGE, SUBNET);
    d = await startBerthd({ dir, config: `[cni]\nplugin_timeout = "20s"\n` });
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    bystander = (await d.cri.runtime.runPodSandbox({ config: podConfig("bystander") })).podSandboxId;
    baseline = await hostLeaks();
  });

  after(async () => {
    process.stderr.write(`# faults injected and survived: ${faultsSurvived} of ${POD_POINTS.length} pod fault points\n`);
    await d?.cleanup({ removePods: true });
    await forceRemoveDir(dir);
    await deleteBridge(BRIDGE);
  });

  for (const [i, point] of POD_POINTS.entries()) {
    test(`kill -9 at ${point}: restart, consistent, operable, nothing leaked`, async () => {
      await d.stop();
      d = await d.restart({ env: { BERTH_FAULT_AT: point } });
      const cfg = podConfig(`victim-${i}`);
      let id: string | undefined;
      const sequence = async () => {
        id = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
        await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
        await d.cri.runtime.removePodSandbox({ podSandboxId: id });
      };
      await assert.rejects(sequence(), (err: { code: number }) => err.code === status.UNAVAILABLE || err.code === status.INTERNAL);
      await d.stop();
      assert.equal(d.proc.signalCode, "SIGKILL", "berthd died of SIGKILL");
      assert.match(d.logs(), new RegExp(`fault point ${point.replace(/\./g, "\\.")} reached`));

      d = await d.restart({ env: {} });
      assert.deepEqual(await podProblems(d), [], d.logs().slice(-3000));
      const victim = await podByName(`victim-${i}`);
      if (point.startsWith("RunPodSandbox.") && point !== "RunPodSandbox.after-ready") {
        assert.equal(victim, undefined, "a half-made pod is rolled back");
        assert.match(d.logs(), /RunPodSandbox was interrupted/);
      } else if (point === "RemovePodSandbox.after-record-delete") {
        assert.equal(victim, undefined);
      } else {
        assert.ok(victim, "the pod is still listed");
        const want = point === "RunPodSandbox.after-ready" || point === "StopPodSandbox.after-containers" ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY;
        assert.equal(victim.state, want);
        if (id) assert.equal(victim.id, id);
      }
      // kubelet's retry with the same name: a new pod, or a clear error naming the pod that holds the name.
      const victims = [id, victim?.id].filter((x): x is string => !!x);
      try {
        victims.push((await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId);
        assert.equal(victim, undefined, "the name was free");
      } catch (err) {
        assert.ok(victim, `retry failed: ${String(err)}`);
        assert.equal((err as { code: number }).code, status.ALREADY_EXISTS);
        assert.match((err as { details: string }).details, new RegExp(`reserved for "${victim.id}"`));
      }
      // everything listed is operable
      for (const p of (await d.cri.runtime.listPodSandbox({})).items) {
        if (p.id === bystander) continue;
        await d.cri.runtime.stopPodSandbox({ podSandboxId: p.id });
        await d.cri.runtime.removePodSandbox({ podSandboxId: p.id });
      }
      await assertOnlyBystander(victims);
      faultsSurvived++;
    });
  }

  test("a corrupt record is quarantined and reported; its pod's leftovers are cleaned up; berthd serves the rest", async () => {
    const doomed = (await d.cri.runtime.runPodSandbox({ config: podConfig("corrupt-me") })).podSandboxId;
    const kept = (await d.cri.runtime.runPodSandbox({ config: podConfig("keep-me") })).podSandboxId;
    assert.equal((await bridgePorts(BRIDGE)).length, 3);
    await d.stop("SIGKILL");
    const file = path.join(d.root, "sandboxes", `${doomed}.json`);
    const text = await readFile(file, "utf8");
    await writeFile(file, text.slice(0, Math.floor(text.length / 2))); // a torn write
    // an entry berth cannot tell is its own: reported, never deleted
    await mkdir(path.join(d.layout.pods, "not-a-pod"), { recursive: true });
    await writeFile(path.join(d.layout.pods, "not-a-pod", "keep"), "x");

    d = await d.restart();
    const ids = (await d.cri.runtime.listPodSandbox({})).items.map((p) => p.id).sort();
    assert.deepEqual(ids, [bystander, kept].sort());
    assert.match(d.logs(), /corrupt sandbox record quarantined/);
    assert.match(d.logs(), new RegExp(`removed the resources of a pod berth has no record of[^\\n]*|"id":"${doomed}"`));
    const quarantined = await readdir(path.join(d.root, "sandboxes", "quarantine"));
    assert.ok(quarantined.some((f) => f.startsWith(`${doomed}.json`)), "the torn record is kept in quarantine");
    assert.equal((await bridgePorts(BRIDGE)).length, 2, "the orphan's veth is gone");
    assert.deepEqual(await iptablesRulesFor([doomed]), []);
    assert.deepEqual(await podProblems(d), []);
    assert.equal(await readFile(path.join(d.layout.pods, "not-a-pod", "keep"), "utf8"), "x");
    assert.match(d.logs(), /unknown entry in berth's pod state dir; left alone/);
    await rm(path.join(d.layout.pods, "not-a-pod"), { recursive: true });
    // the rest is operable, and the quarantined pod's name is free again
    const again = (await d.cri.runtime.runPodSandbox({ config: { ...podConfig("x"), metadata: { name: "corrupt-me-2", namespace: "berth-test", uid: "u", attempt: 0 } } })).podSandboxId;
    for (const id of [kept, again]) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: id });
    }
    await assertOnlyBystander([doomed, kept, again]);
  });

  test("pods whose namespaces and iptables rules vanished (reboot) while berthd was down are NOTREADY, release their address, leak nothing", async () => {
    const gone = (await d.cri.runtime.runPodSandbox({ config: podConfig("rebooted") })).podSandboxId;
    const flushed = (await d.cri.runtime.runPodSandbox({ config: podConfig("rebooted-flushed") })).podSandboxId;
    const infos = [await info(gone), await info(flushed)];
    await d.stop("SIGKILL");
    for (const i of infos) {
      for (const p of [i.netNamespacePath, i.ipcNamespacePath, i.utsNamespacePath, i.shmPath]) assert.equal((await sh("umount", [p])).code, 0);
    }
    // a reboot also empties iptables: drop the masquerade rule and chain of one pod
    for (const rule of await iptablesRulesFor([flushed])) {
      if (!rule.startsWith("-A POSTROUTING")) continue;
      const chain = /-j (CNI-[0-9a-f]+)/.exec(rule)![1]!;
      assert.equal((await sh("sh", ["-c", `iptables -t nat ${rule.replace(/^-A/, "-D")}`])).code, 0);
      assert.equal((await sh("iptables", ["-t", "nat", "-F", chain])).code, 0);
      assert.equal((await sh("iptables", ["-t", "nat", "-X", chain])).code, 0);
    }
    d = await d.restart();
    assert.equal((await podByName("rebooted"))?.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal((await podByName("rebooted-flushed"))?.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.deepEqual(await podProblems(d), []);
    assert.equal((await ipamAddresses()).length, 1, "the addresses were released at start");
    assert.match(d.logs(), /CNI DEL through a stand-in namespace failed; retrying without a namespace/);
    for (const id of [gone, flushed]) {
      await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
      await d.cri.runtime.removePodSandbox({ podSandboxId: id });
    }
    await assertOnlyBystander([gone, flushed]);
  });
});
