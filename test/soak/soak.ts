// `make soak` (not part of `make test`): 8 concurrent clients create, start, exec in, stop and
// remove pods and containers against a real berthd for SOAK_SECONDS (default 300), while one
// more client injects faults at random (SOAK_FAULTS=0 turns it off): a conmon or a pause
// container's conmon killed, an OCI runtime that hangs in create, a CNI plugin that hangs in ADD,
// a sysctl the kernel refuses, a registry that answers 503, resets, stalls or sends corrupt bytes.
// Each fault must end the way docs/recovery.md says. Passes when no call fails unexpectedly,
// nothing is left behind, and berthd's memory stays flat; prints the operation count, the
// faults by kind, the error count and berthd's RSS at start and end.
// Network: bridge brel3, 10.94.3.0/24; cgroups under /berth-test-rel.
import { status } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { causeChain } from "../../src/errors.js";
import { ContainerState, NamespaceMode, PodSandboxState } from "../../src/gen/api.js";
import { readProcStat } from "../../src/proc.js";
import { startBerthd, waitFor, type Berthd } from "../harness/berthd.js";
import { busyboxEntries, pushImage } from "../harness/images.js";
import { hostLeaks } from "../harness/leaks.js";
import { startRegistry, type TestRegistry } from "../harness/registry.js";
import { startFaultProxy, type FaultProxy, type ProxyFault } from "../harness/registry-proxy.js";
import { HANG_POD_PREFIX, HUNG_PLUGIN, hungSleepers, writeHungHelpers } from "../harness/hung-helpers.js";
import { cgroupLeaks, forceRemoveDir, ownLeaks, podProblems, removeCgroupParent, strayFiles } from "../recovery-check.js";
import { bridgePorts, deleteBridge, podConfig, writeBridgeConflist } from "../sandbox-net.js";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 300);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 8);
const FAULTS = process.env.SOAK_FAULTS !== "0";
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a fault's call must end with: a gRPC code (OK = it succeeds), its details matching `re`. */
async function expectCode<T>(what: string, p: Promise<T>, code: status, re?: RegExp): Promise<T | undefined> {
  let got: number | undefined = status.OK;
  let details = "";
  let result: T | undefined;
  try {
    result = await p;
  } catch (err) {
    got = (err as { code?: number }).code;
    details = (err as { details?: string }).details ?? causeChain(err);
  }
  if (got !== code) throw new Error(`${what}: ${got === undefined ? "?" : status[got]}${details ? ` (${details.slice(0, 300)})` : ""}, expected ${status[code]}`);
  if (re && !re.test(details)) throw new Error(`${what}: ${status[code]} as expected, but "${details.slice(0, 300)}" does not match ${re}`);
  return result;
}

interface FaultKit {
  d: Berthd;
  image: string;
  reg: TestRegistry;
  proxy: FaultProxy;
  faultImage: { id: string; layer: string };
}

/** One fault each, run to the end the docs promise; a throw is an unexpected outcome. */
const FAULT_KINDS: Record<string, (k: FaultKit, n: number) => Promise<void>> = {
  "conmon killed": async ({ d, image }, n) => {
    const cri = d.cri.runtime;
    const cfg = podConfig(`fault-conmon-${n}`, { linux: { cgroupParent: CGROUP_PARENT } });
    const pod = (await cri.runPodSandbox({ config: cfg }, DEADLINE)).podSandboxId;
    try {
      const id = (await cri.createContainer({ podSandboxId: pod, sandboxConfig: cfg, config: { metadata: { name: "victim" }, image: { image }, command: ["sleep", "1000"] } }, DEADLINE)).containerId;
      await cri.startContainer({ containerId: id }, DEADLINE);
      const info = JSON.parse((await cri.containerStatus({ containerId: id, verbose: true }, DEADLINE)).info.info!) as { conmonPid: number };
      process.kill(info.conmonPid, "SIGKILL");
      const s = await waitFor("the container to be exited", async () => {
        const st = (await cri.containerStatus({ containerId: id }, DEADLINE)).status!;
        return st.state === ContainerState.CONTAINER_EXITED ? st : undefined;
      }, 15_000);
      if (s.reason !== "MonitorDied") throw new Error(`conmon killed: reason ${s.reason}, expected MonitorDied`);
      await cri.stopContainer({ containerId: id, timeout: 1n }, DEADLINE);
      await cri.removeContainer({ containerId: id }, DEADLINE);
    } finally {
      await cri.stopPodSandbox({ podSandboxId: pod }, DEADLINE);
      await cri.removePodSandbox({ podSandboxId: pod }, DEADLINE);
    }
  },
  "pause conmon killed": async ({ d }, n) => {
    const cri = d.cri.runtime;
    const cfg = podConfig(`fault-pause-${n}`, { linux: { cgroupParent: CGROUP_PARENT, securityContext: { namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.POD, ipc: NamespaceMode.POD } } } });
    const pod = (await cri.runPodSandbox({ config: cfg }, DEADLINE)).podSandboxId;
    try {
      const pid = (JSON.parse((await cri.podSandboxStatus({ podSandboxId: pod, verbose: true }, DEADLINE)).info.info!) as { pid: number }).pid;
      const conmon = (await readProcStat(pid))!.ppid;
      process.kill(conmon, "SIGKILL");
      await waitFor("the pod to be NOTREADY", async () => (await cri.podSandboxStatus({ podSandboxId: pod }, DEADLINE)).status!.state === PodSandboxState.SANDBOX_NOTREADY, 20_000);
    } finally {
      await cri.stopPodSandbox({ podSandboxId: pod }, DEADLINE);
      await cri.removePodSandbox({ podSandboxId: pod }, DEADLINE);
    }
  },
  "runtime hangs in create": async ({ d, image }, n) => {
    const cri = d.cri.runtime;
    const cfg = podConfig(`fault-runtime-${n}`, { linux: { cgroupParent: CGROUP_PARENT } });
    const pod = (await cri.runPodSandbox({ config: cfg, runtimeHandler: "hang" }, DEADLINE)).podSandboxId;
    try {
      await expectCode("hung runtime", cri.createContainer({ podSandboxId: pod, sandboxConfig: cfg, config: { metadata: { name: "hung" }, image: { image }, command: ["sleep", "1"] } }, DEADLINE),
        status.DEADLINE_EXCEEDED, /hang-runc create.*runtime\.call_timeout/);
      const left = (await cri.listContainers({ filter: { podSandboxId: pod } }, DEADLINE)).containers.length;
      if (left) throw new Error(`hung runtime: ${left} containers left in the pod`);
    } finally {
      await cri.stopPodSandbox({ podSandboxId: pod }, DEADLINE);
      await cri.removePodSandbox({ podSandboxId: pod }, DEADLINE);
    }
  },
  "CNI plugin hangs in ADD": async ({ d }, n) => {
    const cfg = podConfig(`${HANG_POD_PREFIX}${n}`, { linux: { cgroupParent: CGROUP_PARENT } });
    await expectCode("hung CNI plugin", d.cri.runtime.runPodSandbox({ config: cfg }, DEADLINE), status.DEADLINE_EXCEEDED, new RegExp(`CNI plugin "${HUNG_PLUGIN}" ADD timed out`));
  },
  "sysctl the kernel refuses": async ({ d }, n) => {
    const cfg = podConfig(`fault-sysctl-${n}`, { linux: { cgroupParent: CGROUP_PARENT, sysctls: { "kernel.shm_rmid_forced": "1+kernel.core_pattern=|/bin/false" } } });
    await expectCode("refused sysctl", d.cri.runtime.runPodSandbox({ config: cfg }, DEADLINE), status.INVALID_ARGUMENT, /kernel\.shm_rmid_forced.*the kernel refused the value/);
  },
  "registry fault": async ({ d, proxy, faultImage }, n) => {
    const kinds: Array<[ProxyFault, status]> = [["503", status.OK], ["reset", status.OK], ["stall", status.DEADLINE_EXCEEDED], ["corrupt", status.INVALID_ARGUMENT]];
    const [fault, code] = kinds[n % kinds.length]!;
    Object.assign(proxy.state, { fault, count: fault === "503" || fault === "reset" ? 1 : 100, digest: faultImage.layer });
    try {
      const r = await expectCode(`registry ${fault}`, d.cri.image.pullImage({ image: { image: `${proxy.host}/soak/fault:1` } }, DEADLINE), code);
      if (r) await d.cri.image.removeImage({ image: { image: faultImage.id } }, DEADLINE);
    } finally {
      proxy.state.fault = undefined;
    }
  },
};

async function main(): Promise<void> {
  const reg = await startRegistry();
  const base = await busyboxEntries(["sh", "sleep", "echo", "cat", "true"]);
  await pushImage(reg, "soak/busybox", { layers: [{ entries: base }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
  await pushImage(reg, "soak/pause", { layers: [{ entries: base }], config: { Entrypoint: ["/bin/sleep", "2147483647"], Env: ["PATH=/bin"] } }, ["1"]);
  const pushedFault = await pushImage(reg, "soak/fault", { layers: [{ entries: [{ path: "noise", content: randomBytes(256 * 1024) }], compression: "none" }] }, ["1"]);
  const proxy = await startFaultProxy(reg.url);
  const image = `${reg.host}/soak/busybox:1`;
  const before = await hostLeaks();
  let d: Berthd | undefined;
  const ops = new Map<string, number>();
  const faults = new Map<string, number>();
  const errors: string[] = [];
  let failed = 0;
  try {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-soak-"));
    const binDir = path.join(dir, "bin");
    const hungRuntime = await writeHungHelpers(binDir, path.join(dir, "hung-runtime.pid"));
    d = await startBerthd({
      dir,
      config: `[runtime]\ncall_timeout = "10s"\n[runtime.handlers.hang]\npath = "${hungRuntime}"\n` +
        `[cni]\nbin_dirs = ["${binDir}", "/opt/cni/bin", "/usr/lib/cni"]\nplugin_timeout = "15s"\n` +
        `[image]\npause_image = "${reg.host}/soak/pause:1"\npull_progress_timeout = "2s"\n`,
      args: ["--log-level", "info"],
    });
    const berthd = d;
    await writeBridgeConflist(berthd.dir, BRIDGE, SUBNET, [{ type: HUNG_PLUGIN }]);
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
    const kit: FaultKit = { d: berthd, image, reg, proxy, faultImage: { id: pushedFault.id, layer: pushedFault.layerDigests[0]! } };
    const injector = async () => {
      // Every kind once per round, in a random order, at random moments of the clients' cycles.
      let round: string[] = [];
      for (let n = 0; Date.now() < until; n++) {
        await sleep(500 + Math.floor(Math.random() * 2500));
        if (Date.now() >= until) break;
        if (round.length === 0) round = Object.keys(FAULT_KINDS).sort(() => Math.random() - 0.5);
        const kind = round.pop()!;
        try {
          await FAULT_KINDS[kind]!(kit, n);
          faults.set(kind, (faults.get(kind) ?? 0) + 1);
        } catch (err) {
          errors.push(`fault "${kind}": ${causeChain(err)}`);
        }
      }
    };
    await Promise.all([
      ...Array.from({ length: CLIENTS }, async (_v, client) => {
        for (let n = 1; Date.now() < until; n++) await cycle(client, n).catch(() => undefined);
      }),
      ...(FAULTS ? [injector()] : []),
    ]);
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
      ...(await hungSleepers()).map((p) => `hung helper process ${p}`),
      ...((await berthd.cri.image.listImages({}, DEADLINE)).images.filter((i) => i.id === pushedFault.id).map((i) => `image ${i.id}`)),
    ];
    console.log("operations by RPC:");
    for (const [k, v] of [...ops.entries()].sort()) console.log(`  ${k} ${v}`);
    const faultTotal = [...faults.values()].reduce((a, b) => a + b, 0);
    console.log(`faults injected and handled as documented: ${faultTotal}`);
    for (const [k, v] of [...faults.entries()].sort()) console.log(`  ${k} ${v}`);
    for (const e of errors.slice(0, 20)) console.log(`  error: ${e}`);
    console.log(`soak: ${CLIENTS} clients for ${elapsed.toFixed(0)} s: ${total} operations (${(total / elapsed).toFixed(1)}/s), ${faultTotal} faults, ${errors.length} unexpected errors`);
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
    await proxy.close();
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
