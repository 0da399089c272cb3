// The runtimes under test, each started on a private root, state dir and socket under the
// benchmark's temp dir: berthd (bin/berthd), Debian's containerd 1.6 with its CRI plugin, and
// CRI-O when the run is given its binaries (CRIO=, PINNS=).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, open, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { connectCri, type CriClient } from "../src/cri/client.js";
import { conflist, NETWORKS } from "./cni.js";
import { findProcs } from "./procs.js";

export type RuntimeName = "berth" | "containerd" | "crio";

/** Report order. */
export const RUNTIME_NAMES: readonly RuntimeName[] = ["berth", "containerd", "crio"];

export interface RuntimeUnderTest {
  name: RuntimeName;
  dir: string;
  socket: string;
  cri: CriClient;
  pid: number;
  /** Where runc keeps this runtime's container state (for the bare `runc exec` floor). */
  runcRoot: string;
  /** Pods of this runtime go under this cgroup parent. */
  cgroupParent: string;
  /** The per-container (or per-pod) monitor processes: conmon for berth and CRI-O, shims for containerd. */
  monitorPids(): Promise<number[]>;
  /** SIGTERM, then SIGKILL after 15 s. */
  stop(): Promise<void>;
  logFile: string;
}

export const CGROUP_ROOT = "/berth-bench";

export interface StartOptions {
  dir: string;
  registryHost: string;
  pauseImage: string;
}

interface Daemon {
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function spawnDaemon(cmd: string, args: string[], logFile: string): Promise<Daemon> {
  const log = await open(logFile, "a");
  // Own process group: a terminal's Ctrl-C reaches only the harness, which still needs the
  // daemon to remove pods through the CRI before stopping it.
  const proc = spawn(cmd, args, {
    stdio: ["ignore", log.fd, log.fd],
    detached: true,
    // The node running the benchmark is the one bin/berthd's `env node` finds.
    env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}` },
  });
  await log.close();
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  return {
    proc,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

async function waitForSocket(what: string, socket: string, d: Daemon, logFile: string, cri: () => CriClient): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    if (d.proc.exitCode !== null || d.proc.signalCode !== null) {
      const tail = (await readFile(logFile, "utf8").catch(() => "")).split("\n").slice(-20).join("\n");
      throw new Error(`${what} exited early (${d.proc.exitCode ?? d.proc.signalCode}):\n${tail}`);
    }
    if (await stat(socket).then((s) => s.isSocket(), () => false)) {
      const ok = await cri().runtime.version({ version: "v1" }, { timeoutMs: 2000 }).then(() => true, () => false);
      if (ok) return;
    }
    if (Date.now() > until) {
      await d.stop();
      throw new Error(`${what} did not serve ${socket} within 30s; log: ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function berthConfig(o: { root: string; state: string; socket: string; cniConfDir: string; runcRoot: string; registryHost: string; pauseImage: string }): string {
  const mirror = `http://${o.registryHost}`;
  return [
    `root = "${o.root}"`,
    `state = "${o.state}"`,
    `socket = "${o.socket}"`,
    `log_level = "info"`,
    ``,
    `[runtime]`,
    `restrict_oom_score_adj = true`,
    ``,
    // Explicit, so the bare `runc exec` floor finds berth's containers.
    `[runtime.handlers.runc]`,
    `path = "runc"`,
    `root = "${o.runcRoot}"`,
    ``,
    `[cni]`,
    `conf_dir = "${o.cniConfDir}"`,
    `bin_dirs = ["/usr/lib/cni"]`,
    ``,
    `[image]`,
    `pause_image = "${o.pauseImage}"`,
    `insecure_registries = ["${o.registryHost}"]`,
    ``,
    `[image.mirrors]`,
    `"docker.io" = ["${mirror}"]`,
    `"registry.k8s.io" = ["${mirror}"]`,
    ``,
  ].join("\n");
}

export async function startBerth(o: StartOptions, berthd: string): Promise<RuntimeUnderTest> {
  const dir = path.join(o.dir, "berth");
  const root = path.join(dir, "root");
  const state = path.join(dir, "state");
  const socket = path.join(dir, "berth.sock");
  const cniConfDir = path.join(dir, "cni");
  await mkdir(cniConfDir, { recursive: true });
  await writeFile(path.join(cniConfDir, "10-bench.conflist"), conflist(NETWORKS.berth, path.join(dir, "ipam")));
  const runcRoot = path.join(state, "runtime", "runc");
  const configFile = path.join(dir, "berth.toml");
  await writeFile(configFile, berthConfig({ root, state, socket, cniConfDir, runcRoot, registryHost: o.registryHost, pauseImage: o.pauseImage }));
  const logFile = path.join(dir, "berthd.log");
  // bin/berthd runs as an executable, as an operator runs it: its shebang carries berthd's node flags.
  const d = await spawnDaemon(berthd, ["--config", configFile], logFile);
  let cri: CriClient | undefined;
  await waitForSocket("berthd", socket, d, logFile, () => (cri ??= connectCri(socket)));
  return {
    name: "berth",
    dir,
    socket,
    cri: cri!,
    pid: d.proc.pid!,
    runcRoot,
    cgroupParent: `${CGROUP_ROOT}/berth`,
    monitorPids: async () => (await findProcs("conmon", dir)).map((p) => p.pid),
    stop: async () => {
      cri?.close();
      await d.stop();
    },
    logFile,
  };
}

export function containerdConfig(o: { root: string; state: string; socket: string; cniConfDir: string; runcRoot: string; registryHost: string; pauseImage: string }): string {
  const cri = `plugins."io.containerd.grpc.v1.cri"`;
  return [
    `version = 2`,
    `root = "${o.root}"`,
    `state = "${o.state}"`,
    // Plugins that would touch host paths outside the private dirs, or that the benchmark never uses.
    `disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]`,
    ``,
    `[grpc]`,
    `address = "${o.socket}"`,
    ``,
    `[ttrpc]`,
    `address = "${o.socket}.ttrpc"`,
    ``,
    `[debug]`,
    `level = "info"`,
    ``,
    `[${cri}]`,
    `sandbox_image = "${o.pauseImage}"`,
    `restrict_oom_score_adj = true`,
    `netns_mounts_under_state_dir = true`,
    `stream_server_address = "127.0.0.1"`,
    `stream_server_port = "0"`,
    `max_concurrent_downloads = 3`,
    ``,
    `[${cri}.containerd]`,
    `snapshotter = "overlayfs"`,
    `default_runtime_name = "runc"`,
    ``,
    `[${cri}.containerd.runtimes.runc]`,
    `runtime_type = "io.containerd.runc.v2"`,
    ``,
    `[${cri}.containerd.runtimes.runc.options]`,
    `BinaryName = "runc"`,
    `Root = "${o.runcRoot}"`,
    `SystemdCgroup = false`,
    ``,
    `[${cri}.cni]`,
    `bin_dir = "/usr/lib/cni"`,
    `conf_dir = "${o.cniConfDir}"`,
    `max_conf_num = 1`,
    ``,
    `[${cri}.registry.mirrors."${o.registryHost}"]`,
    `endpoint = ["http://${o.registryHost}"]`,
    ``,
    `[${cri}.registry.mirrors."docker.io"]`,
    `endpoint = ["http://${o.registryHost}"]`,
    ``,
  ].join("\n");
}

export async function startContainerd(o: StartOptions): Promise<RuntimeUnderTest> {
  const dir = path.join(o.dir, "containerd");
  const root = path.join(dir, "root");
  const state = path.join(dir, "state");
  const socket = path.join(dir, "containerd.sock");
  const cniConfDir = path.join(dir, "cni");
  const runcRoot = path.join(dir, "runc");
  await mkdir(cniConfDir, { recursive: true });
  await writeFile(path.join(cniConfDir, "10-bench.conflist"), conflist(NETWORKS.containerd, path.join(dir, "ipam")));
  const configFile = path.join(dir, "config.toml");
  await writeFile(configFile, containerdConfig({ root, state, socket, cniConfDir, runcRoot, registryHost: o.registryHost, pauseImage: o.pauseImage }));
  const logFile = path.join(dir, "containerd.log");
  const d = await spawnDaemon("containerd", ["--config", configFile], logFile);
  let cri: CriClient | undefined;
  await waitForSocket("containerd", socket, d, logFile, () => (cri ??= connectCri(socket)));
  return {
    name: "containerd",
    dir,
    socket,
    cri: cri!,
    pid: d.proc.pid!,
    // The CRI plugin runs its containers in the k8s.io namespace, a subdir of the shim's runc root.
    runcRoot: path.join(runcRoot, "k8s.io"),
    cgroupParent: `${CGROUP_ROOT}/containerd`,
    monitorPids: async () => (await findProcs("containerd-shim-runc-v2", socket)).map((p) => p.pid),
    stop: async () => {
      cri?.close();
      await d.stop();
    },
    logFile,
  };
}

export interface CrioBinaries {
  crio: string;
  pinns: string;
}

/**
 * CRI-O configured like the other two: cgroupfs, conmon and runc from PATH, PID per container
 * (no infra container: CRI-O starts one with oom_score_adj -998, which needs CAP_SYS_RESOURCE),
 * its own root, state, socket and bridge, and registries.conf drop-ins that send docker.io and
 * registry.k8s.io to the local registry (reached over plain http).
 */
export function crioConfig(o: { dir: string; socket: string; cniConfDir: string; runcRoot: string; pinns: string; runc: string; conmon: string; pauseImage: string }): string {
  const d = o.dir;
  return [
    `[crio]`,
    `root = "${d}/root"`,
    `runroot = "${d}/state"`,
    `storage_driver = "overlay"`,
    `log_dir = "${d}/pod-logs-crio"`,
    `version_file = "${d}/state/version"`,
    `version_file_persist = "${d}/version"`,
    `clean_shutdown_file = "${d}/clean.shutdown"`,
    ``,
    `[crio.api]`,
    `listen = "${o.socket}"`,
    `stream_address = "127.0.0.1"`,
    `stream_port = "0"`,
    ``,
    `[crio.runtime]`,
    `default_runtime = "runc"`,
    `cgroup_manager = "cgroupfs"`,
    `conmon_cgroup = "pod"`,
    `namespaces_dir = "${d}/ns"`,
    `pinns_path = "${o.pinns}"`,
    `container_exits_dir = "${d}/exits"`,
    `container_attach_socket_dir = "${d}/attach"`,
    `log_level = "info"`,
    `drop_infra_ctr = true`,
    // Host files CRI-O would otherwise read or rewrite.
    `irqbalance_config_file = ""`,
    `irqbalance_config_restore_file = "disable"`,
    `hooks_dir = []`,
    `cdi_spec_dirs = []`,
    ``,
    `[crio.runtime.runtimes.runc]`,
    `runtime_path = "${o.runc}"`,
    `runtime_root = "${o.runcRoot}"`,
    `runtime_type = "oci"`,
    `monitor_path = "${o.conmon}"`,
    `monitor_cgroup = "pod"`,
    ``,
    `[crio.image]`,
    `pause_image = "${o.pauseImage}"`,
    `signature_policy = "${d}/policy.json"`,
    `big_files_temporary_dir = "${d}/tmp"`,
    ``,
    `[crio.network]`,
    `network_dir = "${o.cniConfDir}"`,
    `plugin_dirs = ["/usr/lib/cni"]`,
    ``,
    `[crio.nri]`,
    `enable_nri = false`,
    ``,
  ].join("\n");
}

/** registries.conf.d drop-in: the local registry over http, and the public names mirrored to it. */
export function crioRegistries(registryHost: string): string {
  const mirrored = (location: string) => [`[[registry]]`, `location = "${location}"`, `[[registry.mirror]]`, `location = "${registryHost}"`, `insecure = true`, ``];
  return [`[[registry]]`, `location = "${registryHost}"`, `insecure = true`, ``, ...mirrored("docker.io"), ...mirrored("registry.k8s.io")].join("\n");
}

async function onPath(name: string): Promise<string> {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const p = path.join(dir, name);
    if (await stat(p).then((s) => s.isFile(), () => false)) return p;
  }
  throw new Error(`${name} is not on PATH`);
}

export async function startCrio(o: StartOptions, bin: CrioBinaries): Promise<RuntimeUnderTest> {
  const dir = path.join(o.dir, "crio");
  const socket = path.join(dir, "crio.sock");
  const cniConfDir = path.join(dir, "cni");
  const runcRoot = path.join(dir, "runc");
  await mkdir(cniConfDir, { recursive: true });
  await mkdir(path.join(dir, "registries.d"), { recursive: true });
  await mkdir(path.join(dir, "tmp"), { recursive: true });
  await writeFile(path.join(cniConfDir, "10-bench.conflist"), conflist(NETWORKS.crio, path.join(dir, "ipam")));
  await writeFile(path.join(dir, "policy.json"), JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  await writeFile(path.join(dir, "registries.conf"), `unqualified-search-registries = []\n`);
  await writeFile(path.join(dir, "registries.d", "50-bench.conf"), crioRegistries(o.registryHost));
  const configFile = path.join(dir, "crio.conf");
  await writeFile(configFile, crioConfig({ dir, socket, cniConfDir, runcRoot, pinns: bin.pinns, runc: await onPath("runc"), conmon: await onPath("conmon"), pauseImage: o.pauseImage }));
  const logFile = path.join(dir, "crio.log");
  const d = await spawnDaemon(bin.crio, [
    "--config", configFile, "--config-dir", path.join(dir, "crio.conf.d"),
    "--registries-conf", path.join(dir, "registries.conf"), "--registries-conf-dir", path.join(dir, "registries.d"),
  ], logFile);
  let cri: CriClient | undefined;
  await waitForSocket("crio", socket, d, logFile, () => (cri ??= connectCri(socket)));
  return {
    name: "crio",
    dir,
    socket,
    cri: cri!,
    pid: d.proc.pid!,
    runcRoot,
    cgroupParent: `${CGROUP_ROOT}/crio`,
    monitorPids: async () => (await findProcs("conmon", dir)).map((p) => p.pid),
    stop: async () => {
      cri?.close();
      await d.stop();
    },
    logFile,
  };
}
