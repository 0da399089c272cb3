// `make soak` (not part of `make test`): 8 concurrent clients create, start, exec in, stop and
// remove pods and containers against a real berthd for SOAK_SECONDS (default 300). Passes when
// no call fails, nothing is left behind, and berthd's memory stays flat; prints the operation
// count, the error count and berthd's RSS at start and end.
// Network: bridge brel3, 10.94.3.0/24; cgroups under /berth-test-rel.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { causeChain } from "../../src/errors.js";
import { ContainerState } from "../../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "../harness/berthd.js";
import { busyboxEntries, pushImage } from "../harness/images.js";
import { hostLeaks } from "../harness/leaks.js";
import { startRegistry } from "../harness/registry.js";
import { cgroupLeaks, forceRemoveDir, ownLeaks, podProblems, removeCgroupParent, strayFiles } from "../recovery-check.js";
import { bridgePorts, deleteBridge, podConfig, writeBridgeConflist } from "../sandbox-net.js";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 300);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 8);
const BRIDGE = "brel3";
const SUBNET = "10.94.3.0/24";
const CGROUP_PARENT = "/berth-test-rel";
const MiB = 1024 * 1024;
// Every call has a deadline: a hang is reported as an error, never waited out.
const DEADLINE = { timeoutMs: 120_000 };

async function rssBytes(pid: number): Promise<number> {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

async function main(): Promise<void> {
  const reg = await startRegistry();
  await pushImage(reg, "soak/busybox", { layers: [{ entries: await busyboxEntries(["sh", "sleep", "echo", "cat", "true"]) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
  const image = `${reg.host}/soak/busybox:1`;
  const before = await hostLeaks();
  let d: Berthd | undefined;
  const ops = new Map<string, number>();
  const errors: string[] = [];
  let failed = 0;
  try {
    d = await startBerthd({ config: `[cni]\nplugin_timeout = "30s"\n`, args: ["--log-level", "info"] });
    const berthd = d;
    await writeBridgeConflist(berthd.dir, BRIDGE, SUBNET);
    await waitFor("NetworkReady", async () => (await berthd.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    await berthd.cri.image.pullImage({ image: { image } });
    const cri = berthd.cri.runtime;

    const call = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      try {
        const r = await fn();
        ops.set(name, (ops.get(name) ?? 0) + 1);
        return r;
      } catch (err) {
        errors.push(`${name}: ${causeChain(err)}`);
        throw err;
      }
    };

    const until = Date.now() + SECONDS * 1000;
    const rss: number[] = [];
    // Warm up once so the start figure is taken with the code paths loaded.
    const cycle = async (client: number, n: number) => {
      const cfg = podConfig(`soak-${client}-${n}`, { logDirectory: path.join(berthd.dir, "logs", `${client}-${n}`), linux: { cgroupParent: CGROUP_PARENT } });
      const pod = (await call("RunPodSandbox", () => cri.runPodSandbox({ config: cfg }, DEADLINE))).podSandboxId;
      const ids: string[] = [];
      try {
        for (const c of ["a", "b"]) {
          const id = (await call("CreateContainer", () => cri.createContainer({
            podSandboxId: pod, sandboxConfig: cfg,
            config: { metadata: { name: c }, image: { image }, command: ["sh", "-c", `echo ${c} up; exec sleep 1000`], logPath: `${c}.log` },
          }, DEADLINE))).containerId;
          ids.push(id);
          await call("StartContainer", () => cri.startContainer({ containerId: id }, DEADLINE));
        }
        for (const id of ids) {
          const r = await call("ExecSync", () => cri.execSync({ containerId: id, cmd: ["echo", `exec-${n}`], timeout: 10n }, DEADLINE));
          if (r.stdout.toString() !== `exec-${n}\n` || r.exitCode !== 0) errors.push(`ExecSync: wrong answer ${JSON.stringify(r.stdout.toString())} exit ${r.exitCode}`);
          const s = await call("ContainerStatus", () => cri.containerStatus({ containerId: id }, DEADLINE));
          if (s.status!.state !== ContainerState.CONTAINER_RUNNING) errors.push(`ContainerStatus: ${id} is ${s.status!.state}, not running`);
        }
        await call("ListContainers", () => cri.listContainers({ filter: { podSandboxId: pod } }, DEADLINE));
        await call("PodSandboxStatus", () => cri.podSandboxStatus({ podSandboxId: pod }, DEADLINE));
        await call("ListPodSandbox", () => cri.listPodSandbox({}, DEADLINE));
        for (const id of ids) await call("StopContainer", () => cri.stopContainer({ containerId: id, timeout: 1n }, DEADLINE));
        for (const id of ids) await call("RemoveContainer", () => cri.removeContainer({ containerId: id }, DEADLINE));
      } finally {
        await call("StopPodSandbox", () => cri.stopPodSandbox({ podSandboxId: pod }, DEADLINE));
        await call("RemovePodSandbox", () => cri.removePodSandbox({ podSandboxId: pod }, DEADLINE));
      }
    };
    await cycle(99, 0);
    const startRss = await rssBytes(berthd.proc.pid!);
    const sampler = setInterval(() => void rssBytes(berthd.proc.pid!).then((b) => rss.push(b), () => undefined), 5000);
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CLIENTS }, async (_v, client) => {
      for (let n = 1; Date.now() < until; n++) await cycle(client, n).catch(() => undefined);
    }));
    clearInterval(sampler);
    const elapsed = (Date.now() - t0) / 1000;
    // Let the heap settle before the end figure: a flat daemon returns to its working set.
    await new Promise((r) => setTimeout(r, 2000));
    const endRss = await rssBytes(berthd.proc.pid!);
    const total = [...ops.values()].reduce((a, b) => a + b, 0);

    const leftovers = [
      ...(await podProblems(berthd)),
      ...(await strayFiles(berthd, [])),
      ...(await cgroupLeaks(CGROUP_PARENT, [])),
      ...(await bridgePorts(BRIDGE)).map((p) => `veth ${p} on ${BRIDGE}`),
      ...((await cri.listPodSandbox({}, DEADLINE)).items.map((p) => `pod ${p.id}`)),
      ...((await cri.listContainers({}, DEADLINE)).containers.map((c) => `container ${c.id}`)),
    ];
    console.log("operations by RPC:");
    for (const [k, v] of [...ops.entries()].sort()) console.log(`  ${k} ${v}`);
    for (const e of errors.slice(0, 20)) console.log(`  error: ${e}`);
    console.log(`soak: ${CLIENTS} clients for ${elapsed.toFixed(0)} s: ${total} operations (${(total / elapsed).toFixed(1)}/s), ${errors.length} errors`);
    console.log(`soak: berthd RSS at start ${(startRss / MiB).toFixed(1)} MiB, at end ${(endRss / MiB).toFixed(1)} MiB, max ${(Math.max(startRss, ...rss) / MiB).toFixed(1)} MiB over ${rss.length} samples`);
    const q = (f: number) => ((rss[Math.min(rss.length - 1, Math.floor(rss.length * f))] ?? endRss) / MiB).toFixed(1);
    console.log(`soak: berthd RSS over the run (MiB): 25% ${q(0.25)}, 50% ${q(0.5)}, 75% ${q(0.75)}, end ${(endRss / MiB).toFixed(1)}`);
    if (leftovers.length) console.log(`soak: left behind: ${leftovers.join("; ")}`);
    console.log(`soak: RSS samples every 5 s (MiB): ${rss.map((b) => Math.round(b / MiB)).join(" ")}`);
    // Flat: the heap grows to its working set under load in the first half, then only moves within
    // the garbage collector's sawtooth; a leak keeps climbing past the first half's peak.
    const firstHalfPeak = Math.max(startRss, ...rss.slice(0, Math.ceil(rss.length / 2)));
    const secondHalfPeak = Math.max(endRss, ...rss.slice(Math.ceil(rss.length / 2)));
    const climbed = secondHalfPeak - firstHalfPeak;
    console.log(`soak: RSS peak first half ${(firstHalfPeak / MiB).toFixed(1)} MiB, second half ${(secondHalfPeak / MiB).toFixed(1)} MiB`);
    if (climbed > 32 * MiB) console.log(`soak: memory climbed ${(climbed / MiB).toFixed(1)} MiB past the first half's peak`);
    if (errors.length > 0 || leftovers.length > 0 || climbed > 32 * MiB) failed = 1;
  } catch (err) {
    console.log(`soak: aborted: ${causeChain(err)}`);
    failed = 1;
  }
  let leaks: string[] = [];
  try {
    const exit = d ? await d.stop() : 0;
    if (exit !== 0) {
      console.log(`soak: berthd exited with ${exit}`);
      failed = 1;
    }
    leaks = d ? ownLeaks(before, await hostLeaks(), d.dir) : [];
  } finally {
    if (d) await forceRemoveDir(d.dir);
    await reg.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  }
  if (leaks.length) {
    console.log(`soak: leaks: ${leaks.join("; ")}`);
    failed = 1;
  }
  console.log(`soak: ${leaks.length} leaks after shutdown`);
  console.log(`${failed ? 0 : 1} passed, ${failed} failed`);
  process.exitCode = failed;
}

await main();
