// What CreateContainer learns from the host before the (pure) spec is generated: host facts,
// device nodes, bind-mount sources (created when missing, propagation checked) and seccomp files.
import { lstat, mkdir, readdir, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { MountPropagation, type Device, type Mount } from "../gen/api.js";
import { FailedPrecondition, InvalidArgument, isErrno } from "../errors.js";
import type { CgroupDriverName } from "./cgroups.js";
import { detectCgroupVersion } from "./cgroups.js";
import { ALL_CAPABILITIES, type HostFacts, type ResolvedDevice } from "./spec.js";
import { inside, type BerthDirs } from "./container-validate.js";

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

export async function gatherHostFacts(restrictOomScoreAdj: boolean, _driver: CgroupDriverName): Promise<HostFacts> {
  const cgroupVersion = await detectCgroupVersion();
  const own = Number.parseInt((await readFile("/proc/self/oom_score_adj", "utf8").catch(() => "0")).trim(), 10);
  const apparmor = (await readFile("/sys/module/apparmor/parameters/enabled", "utf8").catch(() => "")).trim() === "Y";
  const selinux = await exists("/sys/fs/selinux/enforce");
  const swapAccounting = cgroupVersion === 1
    ? await exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    : true;
  const capabilities = boundingCapabilities(await readFile("/proc/self/status", "utf8").catch(() => ""));
  return { cgroupVersion, ownOomScoreAdj: Number.isInteger(own) ? own : 0, restrictOomScoreAdj, apparmor, selinux, swapAccounting, capabilities };
}

/** The capability names set in a /proc/<pid>/status CapBnd mask (ALL_CAPABILITIES is in bit order). */
export function boundingCapabilities(status: string): string[] | undefined {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  if (!m) return undefined;
  const mask = BigInt(`0x${m[1]}`);
  return ALL_CAPABILITIES.filter((_c, bit) => ((mask >> BigInt(bit)) & 1n) === 1n);
}

function majorMinor(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

/** The node at hostPath as a device for containerPath; undefined when it is not a character or block device. */
export async function deviceAt(hostPath: string, containerPath: string, permissions: string): Promise<ResolvedDevice | undefined> {
  const st = await stat(hostPath);
  if (!st.isCharacterDevice() && !st.isBlockDevice()) return undefined;
  const { major, minor } = majorMinor(st.rdev);
  return { containerPath, type: st.isCharacterDevice() ? "c" : "b", major, minor, fileMode: st.mode & 0o7777, uid: st.uid, gid: st.gid, permissions };
}

async function devicesUnder(dir: string, skip: Set<string>): Promise<string[]> {
  const out: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    if (skip.has(p)) continue;
    const st = await lstat(p).catch(() => undefined);
    if (!st) continue;
    if (st.isDirectory()) out.push(...(await devicesUnder(p, skip)));
    else if (st.isCharacterDevice() || st.isBlockDevice()) out.push(p);
  }
  return out;
}

const VALID_PERMS = /^[rwm]{1,3}$/;

/** The CRI devices as nodes (a directory brings every device under it). */
export async function resolveDevices(devices: Device[]): Promise<ResolvedDevice[]> {
  const out: ResolvedDevice[] = [];
  for (const d of devices) {
    const perms = d.permissions || "rwm";
    if (!VALID_PERMS.test(perms)) throw new InvalidArgument(`device ${d.hostPath}: permissions "${d.permissions}" must be made of r, w and m`);
    if (!d.hostPath.startsWith("/")) throw new InvalidArgument(`device host_path "${d.hostPath}" must be absolute`);
    const target = d.containerPath || d.hostPath;
    let st;
    try {
      st = await stat(d.hostPath);
    } catch (err) {
      if (isErrno(err, "ENOENT")) throw new InvalidArgument(`device ${d.hostPath} does not exist on the host`);
      throw err;
    }
    if (st.isDirectory()) {
      for (const p of await devicesUnder(d.hostPath, new Set())) {
        const dev = await deviceAt(p, path.join(target, path.relative(d.hostPath, p)), perms);
        if (dev) out.push(dev);
      }
      continue;
    }
    const dev = await deviceAt(d.hostPath, target, perms);
    if (!dev) throw new InvalidArgument(`device ${d.hostPath} is not a character or block device`);
    out.push(dev);
  }
  return out;
}

/** Every device node of the host, for privileged containers (not the pty and shm trees runc sets up itself). */
export async function hostDevices(): Promise<ResolvedDevice[]> {
  const skip = new Set(["/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/dev/ptmx"]);
  const out: ResolvedDevice[] = [];
  for (const p of await devicesUnder("/dev", skip)) {
    const dev = await deviceAt(p, p, "rwm").catch(() => undefined);
    if (dev) out.push(dev);
  }
  return out;
}

interface MountInfo {
  mountPoint: string;
  optional: string[];
}

async function mountInfo(): Promise<MountInfo[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text.split("\n").filter((l) => l !== "").map((l) => {
    const f = l.split(" ");
    const sep = f.indexOf("-");
    return { mountPoint: f[4]!.replace(/\\040/g, " "), optional: f.slice(6, sep) };
  });
}

/** Where p lands once every symlink is followed: its deepest existing ancestor resolved, the rest appended. */
async function resolvedHostPath(p: string): Promise<string> {
  const rest: string[] = [];
  for (let cur = path.resolve(p); ; cur = path.dirname(cur)) {
    try {
      return path.join(await realpath(cur), ...rest.reverse());
    } catch (err) {
      if (!isErrno(err, "ENOENT") && !isErrno(err, "ENOTDIR") || cur === "/") throw err;
      rest.push(path.basename(cur));
    }
  }
}

/**
 * The lexical check of validateContainerConfig sees "/tmp/x", not that /tmp/x links to berth's
 * root: runc follows links in a bind source, so every source is resolved before it is created or used.
 */
export async function checkMountSourcesResolved(mounts: Mount[], dirs: BerthDirs): Promise<void> {
  const guarded: string[] = [];
  for (const d of [dirs.root, dirs.state]) guarded.push(path.resolve(d), await resolvedHostPath(d));
  for (const m of mounts) {
    if (!m.hostPath.startsWith("/")) continue;
    const real = await resolvedHostPath(m.hostPath);
    if (guarded.some((g) => inside(real, g))) {
      throw new InvalidArgument(`mount host_path "${m.hostPath.slice(0, 300)}" resolves to ${real.slice(0, 300)}, inside berth's own data (${dirs.root}, ${dirs.state})`);
    }
  }
}

/**
 * Prepares the host side of the CRI mounts: a missing host path becomes a directory (as kubelet
 * expects); rshared needs a shared host mount and rslave a shared or slave one.
 */
export async function prepareMountSources(mounts: Mount[]): Promise<void> {
  let info: MountInfo[] | undefined;
  for (const m of mounts) {
    if (!m.hostPath.startsWith("/")) continue;
    try {
      await stat(m.hostPath);
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      await mkdir(m.hostPath, { recursive: true, mode: 0o755 });
    }
    if (m.propagation === MountPropagation.PROPAGATION_PRIVATE) continue;
    info ??= await mountInfo();
    const owner = info
      .filter((i) => m.hostPath === i.mountPoint || m.hostPath.startsWith(i.mountPoint.endsWith("/") ? i.mountPoint : i.mountPoint + "/"))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    const shared = owner?.optional.some((o) => o.startsWith("shared:")) ?? false;
    const slave = owner?.optional.some((o) => o.startsWith("master:")) ?? false;
    if (m.propagation === MountPropagation.PROPAGATION_BIDIRECTIONAL && !shared) {
      throw new FailedPrecondition(`mount ${m.containerPath}: bidirectional propagation needs ${m.hostPath} on a shared mount, but ${owner?.mountPoint ?? "its mount"} is not shared`);
    }
    if (m.propagation === MountPropagation.PROPAGATION_HOST_TO_CONTAINER && !shared && !slave) {
      throw new FailedPrecondition(`mount ${m.containerPath}: host-to-container propagation needs ${m.hostPath} on a shared or slave mount, but ${owner?.mountPoint ?? "its mount"} is private`);
    }
  }
}
