// Who a container's process runs as: the image's /etc/passwd and /etc/group, read inside the
// container's rootfs without ever following a symlink out of it, then the CRI / image rules.
import { constants } from "node:fs";
import { lstat, open, readlink } from "node:fs/promises";
import path from "node:path";
import { InvalidArgument, isErrno, NotFound } from "../errors.js";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** The image's user database (either file may be missing: an empty list then). */
export interface UserDb {
  passwd: PasswdEntry[];
  groups: GroupEntry[];
}

/** What the container's process runs as. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Groups: the primary gid, the request's supplemental groups, then (policy Merge) the image's groups listing the user (no duplicates). */
  additionalGids: number[];
  /** The passwd name when the image knows the uid ("" otherwise). */
  username: string;
  /** The passwd home dir, "/" when unknown: HOME when the config sets none. */
  home: string;
}

/** What the request and image ask for. */
export interface UserRequest {
  runAsUser?: bigint;
  runAsUsername?: string;
  runAsGroup?: bigint;
  supplementalGroups?: bigint[];
  /** SupplementalGroupsPolicy Strict: the image's /etc/group memberships are not added. */
  strictGroups?: boolean;
  /** The image config's User: "", "name", "uid", "uid:gid", "name:group", ... */
  imageUser?: string;
}

const MAX_ID = 2 ** 32 - 2;
const MAX_DB_BYTES = 4 * 1024 * 1024;

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 4) continue;
    const uid = parseId(f[2]!);
    const gid = parseId(f[3]!);
    if (uid === undefined || gid === undefined || f[0] === "") continue;
    out.push({ name: f[0]!, uid, gid, home: f[5] || "/" });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 3) continue;
    const gid = parseId(f[2]!);
    if (gid === undefined || f[0] === "") continue;
    out.push({ name: f[0]!, gid, members: (f[3] ?? "").split(",").map((m) => m.trim()).filter((m) => m !== "") });
  }
  return out;
}

function parseId(s: string): number | undefined {
  if (!/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

function idFromBigint(v: bigint, what: string): number {
  if (v < 0n || v > BigInt(MAX_ID)) throw new InvalidArgument(`${what} ${v} is out of range (0..${MAX_ID})`);
  return Number(v);
}

/** Applies the CRI rules (run_as_username, run_as_user, run_as_group, image User) against the image's user db. */
export function resolveUser(req: UserRequest, db: UserDb): ResolvedUser {
  let uid: number;
  let gid: number | undefined;
  let entry: PasswdEntry | undefined;
  if (req.runAsUsername) {
    entry = db.passwd.find((p) => p.name === req.runAsUsername);
    if (!entry) throw new NotFound(`run_as_username "${req.runAsUsername}" is not in the image's /etc/passwd`);
    uid = entry.uid;
  } else if (req.runAsUser !== undefined) {
    uid = idFromBigint(req.runAsUser, "run_as_user");
    entry = db.passwd.find((p) => p.uid === uid);
  } else {
    const spec = (req.imageUser ?? "").trim();
    const [userPart, groupPart] = splitUserSpec(spec);
    if (userPart === "") {
      uid = 0;
    } else if (/^\d+$/.test(userPart)) {
      uid = parseId(userPart) ?? badImageUser(spec);
    } else {
      entry = db.passwd.find((p) => p.name === userPart);
      if (!entry) throw new NotFound(`image User "${spec}": user "${userPart}" is not in the image's /etc/passwd`);
      uid = entry.uid;
    }
    entry ??= db.passwd.find((p) => p.uid === uid);
    if (groupPart !== undefined && groupPart !== "") {
      if (/^\d+$/.test(groupPart)) {
        gid = parseId(groupPart) ?? badImageUser(spec);
      } else {
        const g = db.groups.find((x) => x.name === groupPart);
        if (!g) throw new NotFound(`image User "${spec}": group "${groupPart}" is not in the image's /etc/group`);
        gid = g.gid;
      }
    }
  }
  gid ??= entry?.gid ?? 0;
  if (req.runAsGroup !== undefined) gid = idFromBigint(req.runAsGroup, "run_as_group");

  // The primary gid leads the list (as containerd does), so `id` shows it among the groups.
  const additional: number[] = [gid];
  const add = (g: number) => {
    if (!additional.includes(g)) additional.push(g);
  };
  for (const g of req.supplementalGroups ?? []) add(idFromBigint(g, "supplemental group"));
  const username = entry?.name ?? "";
  if (username !== "" && !req.strictGroups) {
    for (const g of db.groups) if (g.members.includes(username)) add(g.gid);
  }
  return { uid, gid, additionalGids: additional, username, home: entry?.home ?? "/" };
}

/** Real uid, real gid and the groups from a /proc/<pid>/status text. */
export function processIds(status: string): { uid: bigint; gid: bigint; supplementalGroups: bigint[] } | undefined {
  const uid = /^Uid:\s+(\d+)/m.exec(status);
  const gid = /^Gid:\s+(\d+)/m.exec(status);
  const groups = /^Groups:[ \t]*([\d \t]*)$/m.exec(status);
  if (!uid || !gid || !groups) return undefined;
  return { uid: BigInt(uid[1]!), gid: BigInt(gid[1]!), supplementalGroups: groups[1]!.trim().split(/\s+/).filter((g) => g !== "").map(BigInt) };
}

function splitUserSpec(spec: string): [string, string | undefined] {
  const i = spec.indexOf(":");
  return i < 0 ? [spec, undefined] : [spec.slice(0, i), spec.slice(i + 1)];
}

function badImageUser(spec: string): never {
  throw new InvalidArgument(`image User "${spec}" has an id out of range`);
}

/**
 * Resolves `p` inside `root` like a chroot would: ".." stops at the root and every symlink
 * is re-read relative to the root, so the result is always under `root`. Returns the host
 * path; components that do not exist are kept as they are.
 */
export async function resolveInRoot(root: string, p: string): Promise<string> {
  const rootAbs = path.resolve(root);
  const pending = p.split("/").filter((c) => c !== "" && c !== ".");
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === "..") {
      done.pop();
      continue;
    }
    const host = path.join(rootAbs, ...done, c);
    let st;
    try {
      st = await lstat(host);
    } catch (err) {
      if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) {
        done.push(c, ...pending.filter((x) => x !== ".."));
        break;
      }
      throw err;
    }
    if (st.isSymbolicLink()) {
      if (++links > 40) throw new InvalidArgument(`too many symlinks resolving "${p}" in the container's rootfs`);
      const target = await readlink(host);
      if (target.startsWith("/")) done.length = 0;
      pending.unshift(...target.split("/").filter((x) => x !== "" && x !== "."));
      continue;
    }
    done.push(c);
  }
  return path.join(rootAbs, ...done);
}

/** Reads a regular file inside the rootfs (symlinks resolved within it), at most `max` bytes; undefined when absent. */
export async function readFileInRoot(root: string, p: string, max = MAX_DB_BYTES): Promise<string | undefined> {
  const host = await resolveInRoot(root, p);
  let fh;
  try {
    // O_NOFOLLOW: a symlink swapped in after resolving fails instead of leading out of the root.
    fh = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR") || isErrno(err, "ELOOP")) return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    const buf = Buffer.alloc(Math.min(st.size, max));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}

/** Reads the image's /etc/passwd and /etc/group from the container's rootfs. */
export async function readUserDb(rootfs: string): Promise<UserDb> {
  const [passwd, group] = await Promise.all([readFileInRoot(rootfs, "/etc/passwd"), readFileInRoot(rootfs, "/etc/group")]);
  return { passwd: parsePasswd(passwd ?? ""), groups: parseGroup(group ?? "") };
}
