// The CRI runtimes critest runs against: berth (bin/berthd) and, as the baseline, Debian's containerd 1.6.
// Each gets private root/state/socket dirs in the run's dir, the harness's CNI network and its registry as mirror.
import { spawn } from "node:child_process";
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connectCri } from "../../src/cri/client.js";
import { conflist, type NetworkSpec } from "./cni.js";
import { waitFor } from "./host.js";
import { MIRRORED_REGISTRIES } from "./images.js";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const BERTHD = path.join(REPO, "bin/berthd");
export const PAUSE_IMAGE = "registry.k8s.io/pause:3.10";
export const CNI_BIN_DIR = "/usr/lib/cni";

export type RuntimeName = "berth" | "containerd";

export interface RuntimeUnderTest {
  name: RuntimeName;
  /** unix:// address critest is given. */
  endpoint: string;
  dir: string;
  logFile: string;
  network: NetworkSpec;
  stop(): Promise<void>;
}

/** berth: bcrit0 10.93.0.0/16. containerd: bcrit1 10.93.128.0/17 (both can run at once). */
export function networkFor(name: RuntimeName, dir: string): NetworkSpec {
  return name === "berth"
    ? { name: "berth-critest", bridge: "bcrit0", subnet: "10.93.0.0/16", dataDir: path.join(dir, "ipam") }
    : { name: "berth-critest-containerd", bridge: "bcrit1", subnet: "10.93.128.0/17", dataDir: path.join(dir, "ipam") };
}

const q = (s: string) => JSON.stringify(s);

export function berthConfig(dir: string, registry: string): string {
  return [
    `root = ${q(path.join(dir, "root"))}`,
    `state = ${q(path.join(dir, "state"))}`,
    `socket = ${q(path.join(dir, "berth.sock"))}`,
    `log_level = "debug"`,
    "",
    "[cni]",
    `conf_dir = ${q(path.join(dir, "cni"))}`,
    `bin_dirs = [${q(CNI_BIN_DIR)}]`,
    "",
    "[image]",
    `pause_image = ${q(PAUSE_IMAGE)}`,
    "",
    "[image.mirrors]",
    ...MIRRORED_REGISTRIES.map((r) => `${q(r)} = [${q(`http://${registry}`)}]`),
    "",
  ].join("\n");
}

export function containerdConfig(dir: string): string {
  const cri = `plugins."io.containerd.grpc.v1.cri"`;
  return [
    "version = 2",
    `root = ${q(path.join(dir, "root"))}`,
    `state = ${q(path.join(dir, "state"))}`,
    "[grpc]",
    `  address = ${q(path.join(dir, "containerd.sock"))}`,
    "[ttrpc]",
    `  address = ${q(path.join(dir, "containerd.sock.ttrpc"))}`,
    "[debug]",
    `  level = "info"`,
    `[plugins."io.containerd.internal.v1.opt"]`,
    `  path = ${q(path.join(dir, "opt"))}`,
    `[${cri}]`,
    `  sandbox_image = ${q(PAUSE_IMAGE)}`,
    "  restrict_oom_score_adj = true",
    `  stream_server_address = "127.0.0.1"`,
    `  stream_server_port = "0"`,
    `[${cri}.containerd]`,
    `  snapshotter = "overlayfs"`,
    `  default_runtime_name = "runc"`,
    `[${cri}.containerd.runtimes.runc]`,
    `  runtime_type = "io.containerd.runc.v2"`,
    `[${cri}.cni]`,
    `  bin_dir = ${q(CNI_BIN_DIR)}`,
    `  conf_dir = ${q(path.join(dir, "cni"))}`,
    `[${cri}.registry]`,
    `  config_path = ${q(path.join(dir, "certs.d"))}`,
    "",
  ].join("\n");
}

/**
 * containerd's certs.d/<host>/hosts.toml: pull and resolve through the harness registry (plain http). The registry
 * is the server too, so a failed pull never falls back to the public host (no network here).
 */
export function containerdHostsToml(registry: string): string {
  const url = q(`http://${registry}`);
  return `server = ${url}\n\n[host.${url}]\n  capabilities = ["pull", "resolve"]\n`;
}

async function launch(name: RuntimeName, dir: string, cmd: string, args: string[], socket: string, network: NetworkSpec): Promise<RuntimeUnderTest> {
  const logFile = path.join(dir, `${name}.log`);
  const log = await open(logFile, "a");
  // bin/berthd runs as an executable (its shebang carries berthd's node flags), with this node first on PATH.
  const proc = spawn(cmd, args, { stdio: ["ignore", log.fd, log.fd], env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}` } });
  let exited = false;
  const done = new Promise<void>((resolve) => proc.once("exit", () => { exited = true; resolve(); }));
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    if (!exited) proc.kill("SIGTERM");
    const timer = setTimeout(() => { if (!exited) proc.kill("SIGKILL"); }, 30_000);
    await done;
    clearTimeout(timer);
    await log.close();
  })());
  try {
    await waitFor(`${name} serving on ${socket}`, async () => {
      if (exited) throw new Error(`${name} exited; see ${logFile}`);
      if (!(await stat(socket).then((s) => s.isSocket(), () => false))) return false;
      const cri = connectCri(socket);
      try {
        return (await cri.runtime.version({ version: "v1" }, { timeoutMs: 2000 })).runtimeName;
      } finally {
        cri.close();
      }
    }, 60_000, 200);
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, endpoint: `unix://${socket}`, dir, logFile, network, stop };
}

export async function startRuntime(name: RuntimeName, dir: string, registry: string): Promise<RuntimeUnderTest> {
  const network = networkFor(name, dir);
  await mkdir(path.join(dir, "cni"), { recursive: true });
  await writeFile(path.join(dir, "cni", "10-critest.conflist"), conflist(network));
  if (name === "berth") {
    const configFile = path.join(dir, "berth.toml");
    await writeFile(configFile, berthConfig(dir, registry));
    return launch(name, dir, BERTHD, ["--config", configFile], path.join(dir, "berth.sock"), network);
  }
  for (const host of MIRRORED_REGISTRIES) {
    await mkdir(path.join(dir, "certs.d", host), { recursive: true });
    await writeFile(path.join(dir, "certs.d", host, "hosts.toml"), containerdHostsToml(registry));
  }
  const configFile = path.join(dir, "containerd.toml");
  await writeFile(configFile, containerdConfig(dir));
  return launch(name, dir, "containerd", ["--config", configFile], path.join(dir, "containerd.sock"), network);
}
