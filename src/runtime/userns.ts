// Pod user namespaces (KEP-127): the checks of NamespaceOption.userns_options, the map lines
// the kernel reads, and the start-up probe that decides whether berth reports the feature.
// The namespace itself is made and pinned by namespaces.ts; idmapped mounts by the addon.
import { mkdir, mkdtemp, open, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { InvalidArgument } from "../errors.js";
import { NamespaceMode, namespaceModeToJSON, type IDMapping, type NamespaceOption } from "../gen/api.js";
import { unmountAllUnder } from "../image/mount.js";
import type { UsernsRef } from "../image/types.js";
import { idmapMount, pinNewUserNamespace } from "../native/native.js";

/** One mapping: container ids [containerId, containerId+length) are host ids from hostId. */
export interface IdRange {
  containerId: number;
  hostId: number;
  length: number;
}

/** A pod's user namespace: one uid and one gid range, each mapping container id 0. */
export interface PodUserns {
  uids: IdRange;
  gids: IdRange;
}

const MAX_ID = 2 ** 32 - 1;

function oneRange(kind: "uids" | "gids", maps: IDMapping[]): IdRange {
  if (maps.length !== 1) throw new InvalidArgument(`userns_options.${kind}: berth takes exactly one mapping for a POD user namespace, got ${maps.length}`);
  const { containerId, hostId, length } = maps[0]!;
  if (containerId !== 0) throw new InvalidArgument(`userns_options.${kind}: the mapping starts at container id ${containerId}, leaving container id 0 (root) unmapped; start it at 0`);
  if (!Number.isInteger(length) || length < 1) throw new InvalidArgument(`userns_options.${kind}: mapping length ${length} must be at least 1`);
  if (hostId + length - 1 > MAX_ID) throw new InvalidArgument(`userns_options.${kind}: host ids ${hostId}..${hostId + length - 1} go past ${MAX_ID}`);
  return { containerId, hostId, length };
}

/**
 * The pod's user namespace from its namespace options: undefined for NODE (the host's, as
 * before) or no options; InvalidArgument for what berth cannot run, naming what is wrong.
 */
export function podUserns(ns: NamespaceOption): PodUserns | undefined {
  const u = ns.usernsOptions;
  if (!u || u.mode === NamespaceMode.NODE) {
    if (u && (u.uids.length > 0 || u.gids.length > 0)) throw new InvalidArgument("userns_options: mode NODE (the host's user namespace) takes no uids/gids mappings");
    return undefined;
  }
  if (u.mode !== NamespaceMode.POD) {
    throw new InvalidArgument(`userns_options.mode ${namespaceModeToJSON(u.mode)} is not supported: a user namespace is per pod (POD) or the host's (NODE)`);
  }
  const userns = { uids: oneRange("uids", u.uids), gids: oneRange("gids", u.gids) };
  for (const [what, mode] of [["network", ns.network], ["pid", ns.pid], ["ipc", ns.ipc]] as const) {
    if (mode === NamespaceMode.NODE) throw new InvalidArgument(`userns_options.mode POD cannot be combined with the host's ${what} namespace (namespace_options.${what} = NODE)`);
  }
  return userns;
}

/** The uid_map/gid_map line of a range. */
export function mapLine(r: IdRange): string {
  return `${r.containerId} ${r.hostId} ${r.length}\n`;
}

/** The host id container id `id` maps to (the owner berth gives files it makes for the pod). */
export function hostIdOf(r: IdRange, id: number): number {
  return r.hostId + id - r.containerId;
}

/** What the image layer needs to idmap layers for a pod: its pinned user namespace and root's host ids. */
export function usernsRef(userns: (PodUserns & { path: string }) | undefined): UsernsRef | undefined {
  return userns && { path: userns.path, rootUid: hostIdOf(userns.uids, 0), rootGid: hostIdOf(userns.gids, 0) };
}

/** True when a CRI mount's own mappings are the pod's (the one user namespace berth can idmap it through). */
export function sameMapping(userns: PodUserns, uids: IDMapping[], gids: IDMapping[]): boolean {
  const eq = (a: IdRange, b: IDMapping[]) => b.length === 1 && b[0]!.containerId === a.containerId && b[0]!.hostId === a.hostId && b[0]!.length === a.length;
  return eq(userns.uids, uids) && eq(userns.gids, gids);
}

export interface UsernsSupport {
  supported: boolean;
  /** Why not, for the log and for a refused pod. */
  reason: string;
}

/**
 * Whether this host can run user-namespaced pods: user namespaces enabled and an idmapped
 * mount made once on a scratch dir in each of `dirs` (berth's root and state filesystems).
 */
export async function probeUserNamespaces(dirs: string[]): Promise<UsernsSupport> {
  const max = Number((await readFile("/proc/sys/user/max_user_namespaces", "utf8").catch(() => "0")).trim());
  if (!(max > 0)) return { supported: false, reason: "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0 or missing)" };
  for (const wanted of new Set(dirs)) {
    // A dir not made yet (berthd doctor before a first start) is probed at its nearest existing parent.
    let dir = path.resolve(wanted);
    while (dir !== "/" && !(await stat(dir).then(() => true, () => false))) dir = path.dirname(dir);
    // runc mounts a user-namespaced container's rootfs and volumes as the pod's mapped root.
    for (let p = dir; ; p = path.dirname(p)) {
      if (((await stat(p)).mode & 0o001) === 0) return { supported: false, reason: `${p} (on the way to ${wanted}) is not searchable by other users (chmod o+x): a pod's mapped root could not reach its rootfs` };
      if (p === "/") break;
    }
    const scratch = await mkdtemp(path.join(dir, ".userns-probe-"));
    try {
      const user = path.join(scratch, "user");
      await (await open(user, "a", 0o444)).close();
      await Promise.all([mkdir(path.join(scratch, "src")), mkdir(path.join(scratch, "dst"))]);
      await pinNewUserNamespace({ user }, "0 65534 1\n", "0 65534 1\n", "");
      await idmapMount(path.join(scratch, "src"), path.join(scratch, "dst"), user);
    } catch (err) {
      return { supported: false, reason: `no idmapped mount on the filesystem of ${wanted}: ${(err as Error).message}` };
    } finally {
      await unmountAllUnder(scratch);
      await rm(scratch, { recursive: true, force: true });
    }
  }
  return { supported: true, reason: "" };
}
