// `berthd doctor`: the host as a pod would find it, one check per thing a pod needs, each
// failing one with its fix in one line. Exit 0 when a pod can run, 1 when it cannot.
// The probes are the daemon's own (config loading, the CNI conf watcher, cgroups, the overlay mount).
import { access, mkdir, mkdtemp, readFile, rm, statfs } from "node:fs/promises";
import path from "node:path";
import { ConfigError, loadConfig, type Config, type ConfigFlags } from "./config.js";
import { findPlugin } from "./cni/config.js";
import { CniConfWatcher } from "./cni/watcher.js";
import { lockHolder } from "./daemon.js";
import { mountOverlay, unmount } from "./image/mount.js";
import { createLogger } from "./log.js";
import { runCaptured } from "./run-captured.js";
import { detectCgroupVersion, missingControllers } from "./runtime/cgroups.js";
import { probeUserNamespaces } from "./runtime/userns.js";
import { conmonVersion } from "./runtime/oci/conmon.js";
import { ociRuntimeVersion } from "./runtime/oci/runc.js";

export interface Check {
  name: string;
  /** fail: a pod cannot run; warn: some pods or features will not work; info: for the record. */
  status: "ok" | "warn" | "fail" | "info";
  detail: string;
  fix?: string;
}

const MiB = 1024 * 1024;
/** Below these a pull or a pod start runs out of space. */
const MIN_FREE = { root: 512 * MiB, state: 16 * MiB };
/** sun_path holds 108 bytes with the NUL. */
const MAX_SOCKET_PATH = 107;

/** A program's multi-line error as one line: one check, one line, then its fix. */
const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, "; ");
const ok = (name: string, detail: string): Check => ({ name, status: "ok", detail: oneLine(detail) });
const fail = (name: string, detail: string, fix: string): Check => ({ name, status: "fail", detail: oneLine(detail), fix });
const warn = (name: string, detail: string, fix: string): Check => ({ name, status: "warn", detail: oneLine(detail), fix });
const info = (name: string, detail: string): Check => ({ name, status: "info", detail: oneLine(detail) });

const exists = (p: string) => access(p).then(() => true, () => false);

/** The nearest existing directory at or above `dir` (what a not-yet-created root will live on). */
async function existingAncestor(dir: string): Promise<string> {
  let d = path.resolve(dir);
  while (!(await exists(d)) && d !== "/") d = path.dirname(d);
  return d;
}

interface MountEntry { target: string; fstype: string; options: string[] }

/** The mount holding `dir` (longest mount point above it), from /proc/self/mountinfo. */
async function mountOf(dir: string): Promise<MountEntry | undefined> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  let best: MountEntry | undefined;
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-");
    if (sep < 0 || f[4] === undefined) continue;
    const target = f[4].replace(/\\040/g, " ");
    const inside = target === "/" || dir === target || dir.startsWith(`${target}/`);
    if (inside && (!best || target.length >= best.target.length)) {
      best = { target, fstype: f[sep + 1] ?? "", options: [...(f[5] ?? "").split(","), ...(f[sep + 3] ?? "").split(",")] };
    }
  }
  return best;
}

async function handlerChecks(c: Config): Promise<Check[]> {
  const out: Check[] = [];
  for (const [name, h] of Object.entries(c.runtime.handlers)) {
    const label = `runtime handler "${name}"${name === c.runtime.default_handler ? " (default)" : ""}`;
    try {
      out.push(ok(label, `${h.path}: ${(await ociRuntimeVersion(h.path)).version}`));
    } catch (err) {
      out.push(fail(label, (err as Error).message, `install it (Debian: apt-get install runc) or set runtime.handlers.${name}.path to the binary`));
    }
  }
  try {
    out.push(ok("conmon", `${c.runtime.conmon}: ${await conmonVersion(c.runtime.conmon)}`));
  } catch (err) {
    out.push(fail("conmon", (err as Error).message, "install conmon (Debian: apt-get install conmon) or set runtime.conmon to its absolute path"));
  }
  return out;
}

async function networkChecks(c: Config): Promise<Check[]> {
  const out: Check[] = [];
  // NetworkReady's own check; not started, so it re-reads the dir (and never logs).
  const cni = new CniConfWatcher(c.cni.conf_dir, c.cni.bin_dirs, createLogger("silent"));
  const cond = await cni.condition();
  let plugins: string[] = [];
  if (cond.ready) {
    const { config } = await cni.current();
    plugins = config!.plugins.map((p) => p.type);
    out.push(ok("CNI network", `"${config!.name}" from ${config!.file}: ${plugins.join(", ")}`));
  } else {
    out.push(fail("CNI network", cond.message, `put a network config in ${c.cni.conf_dir} (berth's default: docs/cni/10-berth.conflist, or \`make cni-default\`) and its plugins in ${c.cni.bin_dirs.join(" or ")} (apt-get install containernetworking-plugins)`));
  }
  if (!(await findPlugin("loopback", c.cni.bin_dirs))) {
    out.push(fail("CNI loopback plugin", `no "loopback" plugin in ${c.cni.bin_dirs.join(":")} (every pod's lo is brought up with it)`, "apt-get install containernetworking-plugins, or add its folder to cni.bin_dirs"));
  }
  const ipt = await runCaptured("iptables", ["--version"], { timeoutMs: 10_000 });
  if (!ipt.failed) out.push(ok("iptables", ipt.stdout.split("\n")[0] ?? ""));
  else {
    const why = `iptables does not run: ${ipt.stderr || ipt.failedWhy || `exit code ${ipt.exitCode}`}`;
    const fix = "apt-get install iptables";
    out.push(plugins.includes("portmap") ? fail("iptables", `${why} (the "portmap" plugin of the network needs it)`, fix) : warn("iptables", `${why} (hostPort mappings need it)`, fix));
  }
  const forward = (await readFile("/proc/sys/net/ipv4/ip_forward", "utf8").catch(() => "")).trim();
  if (forward === "1") out.push(ok("ip_forward", "net.ipv4.ip_forward = 1"));
  else out.push(warn("ip_forward", `net.ipv4.ip_forward = ${forward || "unreadable"}: pods cannot reach past the node until a plugin (bridge with isGateway) turns it on`, "sysctl -w net.ipv4.ip_forward=1 (and net.ipv4.ip_forward = 1 in /etc/sysctl.d/)"));
  return out;
}

async function cgroupChecks(c: Config): Promise<Check[]> {
  const out: Check[] = [];
  const version = await detectCgroupVersion();
  const missing = await missingControllers(version);
  if (missing.length === 0) out.push(ok("cgroups", `cgroup v${version}, driver ${c.cgroup_driver}, the controllers berth needs are there`));
  else out.push(fail("cgroups", `cgroup v${version}: controllers missing: ${missing.join(", ")}`, version === 2 ? `enable them for the root's children: echo "+${missing.join(" +")}" > /sys/fs/cgroup/cgroup.subtree_control` : `mount each hierarchy under /sys/fs/cgroup (e.g. mount -t cgroup -o ${missing[0]} cgroup /sys/fs/cgroup/${missing[0]})`));
  if (c.cgroup_driver === "systemd" && !(await exists("/run/systemd/system"))) {
    out.push(fail("cgroup driver", `cgroup_driver = "systemd" but systemd is not running (no /run/systemd/system)`, `set cgroup_driver = "cgroupfs" (and kubelet's --cgroup-driver=cgroupfs), or run berthd under systemd`));
  }
  return out;
}

/** Mounts a throwaway overlay on the filesystem the root (and so every snapshot's upper layer) lives on. */
async function overlayCheck(c: Config): Promise<Check> {
  const filesystems = await readFile("/proc/filesystems", "utf8").catch(() => "");
  if (!/\toverlay$/m.test(filesystems)) return fail("overlayfs", "the kernel has no overlay filesystem", "modprobe overlay (and add overlay to /etc/modules-load.d/)");
  const base = await existingAncestor(c.root);
  const fs = (await mountOf(base))?.fstype ?? "unknown";
  let dir: string | undefined;
  try {
    dir = await mkdtemp(path.join(base, ".berth-doctor-"));
    for (const d of ["lower", "upper", "work", "merged"]) await mkdir(path.join(dir, d));
    await mountOverlay({ lower: ["lower"], cwd: dir, upper: path.join(dir, "upper"), work: path.join(dir, "work"), target: path.join(dir, "merged") });
    await unmount(path.join(dir, "merged"));
    return ok("overlayfs", `an overlay mounts with its upper layer on ${base} (${fs})`);
  } catch (err) {
    return fail("overlayfs", `the root ${c.root} is on ${fs} (${base}), where an overlay does not mount: ${(err as Error).message}`, "put root on a filesystem overlayfs takes as upper layer (ext4, xfs with ftype=1, btrfs), not on overlay, NFS or FUSE");
  } finally {
    if (dir) {
      await unmount(path.join(dir, "merged")).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

async function spaceCheck(which: "root" | "state", dir: string): Promise<Check> {
  const base = await existingAncestor(dir);
  const m = await mountOf(base);
  if (m?.options.includes("ro")) return fail(which, `${dir} is on a read-only filesystem (${m.target})`, `set ${which} to a writable folder, or remount ${m.target} read-write`);
  const s = await statfs(base);
  const free = Number(s.bavail) * Number(s.bsize);
  const detail = `${dir} on ${m?.fstype ?? "?"} (${m?.target ?? base}): ${Math.floor(free / MiB)} MiB free`;
  if (free < MIN_FREE[which]) return fail(which, `${detail}, under ${MIN_FREE[which] / MiB} MiB`, `free space on ${m?.target ?? base} (${which === "root" ? "crictl rmi --prune drops unused images" : "it is volatile: a reboot clears it"}) or set ${which} elsewhere`);
  return ok(which, detail);
}

async function socketCheck(c: Config): Promise<Check> {
  const bytes = Buffer.byteLength(c.socket);
  if (bytes > MAX_SOCKET_PATH) return fail("socket", `${c.socket} is ${bytes} bytes, over the ${MAX_SOCKET_PATH} a unix socket path can hold`, "set socket to a shorter path");
  const holder = await lockHolder(`${c.socket}.lock`);
  if (holder !== undefined) return ok("socket", `${c.socket} is served by berthd pid ${holder} (${c.socket}.lock); a second berthd on it would refuse to start`);
  const m = await mountOf(await existingAncestor(path.dirname(c.socket)));
  if (m?.options.includes("ro")) return fail("socket", `${path.dirname(c.socket)} is on a read-only filesystem`, "set socket to a path on a writable filesystem (/run)");
  return ok("socket", `${c.socket}: free (no live berthd holds ${c.socket}.lock)`);
}

async function securityChecks(c: Config): Promise<Check[]> {
  const out: Check[] = [];
  const status = await readFile("/proc/self/status", "utf8");
  if (/^Seccomp:/m.test(status)) out.push(ok("seccomp", "the kernel filters system calls (RuntimeDefault and Localhost profiles apply)"));
  else out.push(fail("seccomp", "the kernel has no seccomp (no Seccomp: line in /proc/self/status): pods asking for a profile fail", "run a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER"));
  const apparmor = (await readFile("/sys/module/apparmor/parameters/enabled", "utf8").catch(() => "")).trim();
  out.push(info("AppArmor", apparmor === "Y" ? "enabled on the host (berth applies no AppArmor profiles)" : "not enabled"));
  const selinux = (await readFile("/sys/fs/selinux/enforce", "utf8").catch(() => "")).trim();
  out.push(info("SELinux", selinux === "" ? "not enabled" : `${selinux === "1" ? "enforcing" : "permissive"} (berth sets no SELinux labels)`));
  // The daemon's own probe: user namespaces enabled, root and state searchable, an idmapped mount made on each.
  const userns = await probeUserNamespaces([c.root, c.state]).catch((err: Error) => ({ supported: false, reason: err.message }));
  out.push(info("user namespaces", userns.supported ? "pods may have their own (userns_options POD): idmapped mounts work on berth's root and state" : `pods asking for their own are refused: ${userns.reason}`));
  return out;
}

/** Every check, in the order a pod start meets them. */
export async function doctorChecks(c: Config): Promise<Check[]> {
  return [
    ...(await handlerChecks(c)),
    ...(await cgroupChecks(c)),
    await overlayCheck(c),
    await spaceCheck("root", c.root),
    await spaceCheck("state", c.state),
    await socketCheck(c),
    ...(await networkChecks(c)),
    ...(await securityChecks(c)),
  ];
}

function formatText(checks: Check[]): string {
  const lines: string[] = [];
  for (const ch of checks) {
    lines.push(`${ch.status.toUpperCase().padEnd(5)} ${ch.name}: ${ch.detail}`);
    if (ch.fix && ch.status !== "ok") lines.push(`      fix: ${ch.fix}`);
  }
  const failed = checks.filter((c) => c.status === "fail").length;
  const warned = checks.filter((c) => c.status === "warn").length;
  lines.push(failed === 0 ? `berthd doctor: a pod can run on this host (${warned} warning${warned === 1 ? "" : "s"})` : `berthd doctor: a pod cannot run on this host: ${failed} check${failed === 1 ? "" : "s"} failed`);
  return `${lines.join("\n")}\n`;
}

/** `berthd doctor [--json]`: prints the checks, returns the exit code. */
export async function runDoctor(flags: ConfigFlags, o: { json: boolean; out: NodeJS.WritableStream }): Promise<number> {
  let checks: Check[];
  try {
    const { config, files } = await loadConfig(flags);
    checks = [ok("config", files.length ? `loaded ${files.join(", ")}` : "no config file: the built-in defaults"), ...(await doctorChecks(config))];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    checks = [fail("config", err.message, "correct the key or file named (docs/config.md lists every key); nothing else can be checked until the config loads")];
  }
  const canRun = !checks.some((c) => c.status === "fail");
  o.out.write(o.json ? `${JSON.stringify({ ok: canRun, checks }, null, 2)}\n` : formatText(checks));
  return canRun ? 0 : 1;
}
