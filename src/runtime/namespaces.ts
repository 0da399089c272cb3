// A pod's pinned namespaces and kernel mounts: namespaces created by a thread of berthd's
// native addon and kept alive by a bind mount of their nsfs file (no process needs to hold
// them), sysctls written inside a pinned namespace with nsenter(1), and the pod's /dev/shm
// tmpfs (mountinfo and unmount come from src/image/mount.ts). The only module that mounts for
// pods (and runs nsenter, and ip for one recovery case).
import { execa } from "execa";
import { mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { InvalidArgument } from "../errors.js";
import { isMountpoint, mountsUnder, unmountAllUnder } from "../image/mount.js";
import { MS, mountFs, pinNewNamespaces, pinNewUserNamespace } from "../native/native.js";
import { hostIdOf, mapLine, type PodUserns } from "./userns.js";

export type PinnedKind = "net" | "ipc" | "uts";

const TIMEOUT_MS = 30_000;

function failure(what: string, r: { stderr: string; shortMessage?: string; exitCode?: number }): Error {
  return new Error(`${what}: ${r.stderr.trim() || r.shortMessage || `exit code ${r.exitCode}`}`);
}

/**
 * Creates new namespaces of `kinds` pinned at <dir>/<kind>. With "uts", `hostname` is set
 * inside the new UTS namespace before it is pinned in use. With `userns`, a user namespace
 * with its maps is pinned at <dir>/user first and owns the others (so their sysctls and
 * mounts belong to the pod's root).
 */
export async function pinNamespaces(dir: string, kinds: PinnedKind[], hostname: string, userns?: PodUserns): Promise<Record<PinnedKind | "user", string | undefined>> {
  const paths: Record<PinnedKind | "user", string | undefined> = { net: undefined, ipc: undefined, uts: undefined, user: undefined };
  if (kinds.length === 0 && !userns) return paths;
  await mkdir(dir, { recursive: true, mode: 0o711 });
  for (const kind of userns ? ["user" as const, ...kinds] : kinds) {
    const file = path.join(dir, kind);
    // A bind mount needs an existing target file.
    await (await open(file, "a", 0o444)).close();
    paths[kind] = file;
  }
  try {
    const name = kinds.includes("uts") ? hostname : "";
    if (userns) await pinNewUserNamespace({ user: paths.user!, net: paths.net, ipc: paths.ipc, uts: paths.uts }, mapLine(userns.uids), mapLine(userns.gids), name);
    else await pinNewNamespaces({ net: paths.net, ipc: paths.ipc, uts: paths.uts }, name);
  } catch (err) {
    await unpinNamespaces(dir).catch(() => undefined);
    throw new Error(`create ${[...(userns ? ["user"] : []), ...kinds].join(", ")} namespaces pinned in ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return paths;
}

/** Unpins every namespace under `dir` and removes the dir. Idempotent. */
export async function unpinNamespaces(dir: string): Promise<void> {
  // Deepest first; a pin that will not unmount (busy) is detached lazily.
  await unmountAllUnder(dir);
  await rm(dir, { recursive: true, force: true });
}

/** True when `file` is a live namespace pin (an nsfs bind mount). */
export async function isPinned(file: string): Promise<boolean> {
  return (await mountsUnder(file)).some((m) => m.target === file && m.fstype === "nsfs");
}

/**
 * Writes /proc/sys/<procPath> as seen from inside the namespace pinned at nsFile; with
 * `usernsFile`, as the root of that user namespace (which owns a user-namespaced pod's
 * namespaces: their sysctl files are writable by it, not by the host's root).
 */
export async function writeSysctlIn(kind: "net" | "ipc" | "uts", nsFile: string, procPath: string, value: string, usernsFile?: string): Promise<void> {
  const file = path.posix.join("/proc/sys", procPath);
  const user = usernsFile ? [`--user=${usernsFile}`] : [];
  const r = await execa("nsenter", [...user, `--${kind}=${nsFile}`, "--", "tee", file], { input: value, reject: false, timeout: TIMEOUT_MS, stdout: "ignore" });
  if (!r.failed) return;
  // tee's last words are the kernel's answer to the write (strerror): a refused value is the request's fault.
  const answer = /: ([^:\n]+)\s*$/.exec(String(r.stderr))?.[1];
  if (r.exitCode === 1 && answer && KERNEL_REFUSED.test(answer)) throw new InvalidArgument(`the kernel refused the value (write ${file}): ${answer}`);
  throw failure(`write ${file} in ${kind} namespace ${nsFile}`, r);
}

/** strerror texts of the errnos a sysctl write gets for a value it does not take (EINVAL, ERANGE, EOVERFLOW). */
const KERNEL_REFUSED = /^(Invalid argument|Numerical result out of range|Value too large for defined data type)$/;

/**
 * Mounts a private tmpfs (the pod's /dev/shm) of `sizeBytes` at `target`; in a user-namespaced
 * pod its root is owned by the pod's root (uid=/gid= of the mapped ids).
 */
export async function mountShm(target: string, sizeBytes: number, userns?: PodUserns): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o755 });
  if (await isMountpoint(target)) return;
  const owner = userns ? `,uid=${hostIdOf(userns.uids, 0)},gid=${hostIdOf(userns.gids, 0)}` : "";
  await mountFs({ source: "shm", target, fstype: "tmpfs", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: `mode=1777,size=${sizeBytes}${owner}` }).catch((err: Error) => {
    throw new Error(`mount tmpfs at ${target}: ${err.message}`, { cause: err });
  });
}

/** Removes a file or dir that may not exist. */
export async function removePath(p: string): Promise<void> {
  await rm(p, { recursive: true, force: true });
}

/**
 * Gives a fresh network namespace at `nsFile` an interface `ifName` holding `cidrs`: after
 * a pod's namespace vanished (reboot, crash), CNI plugins such as bridge find what to tear
 * down (masquerade rules keyed by the address) only through the interface in the netns.
 */
export async function stageNetnsForTeardown(nsDir: string, ifName: string, cidrs: string[]): Promise<string> {
  const file = (await pinNamespaces(nsDir, ["net"], "")).net!;
  // A veth pair (both ends inside): the dummy link type is not in every kernel.
  const steps = [["link", "add", ifName, "type", "veth", "peer", "name", "berth-stage0"], ...cidrs.map((c) => ["addr", "add", c, "dev", ifName])];
  for (const args of steps) {
    const r = await execa("nsenter", [`--net=${file}`, "--", "ip", ...args], { reject: false, timeout: TIMEOUT_MS });
    if (r.failed) throw failure(`ip ${args.join(" ")} in ${file}`, r);
  }
  return file;
}
