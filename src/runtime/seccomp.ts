// Seccomp for containers: berth's built-in RuntimeDefault profile, Localhost profiles read from
// a file (OCI or Docker JSON), Unconfined; picked from the CRI's structured `seccomp` field or
// the deprecated `seccomp_profile_path` string ("runtime/default", "docker/default",
// "unconfined", "localhost/<path>").
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { SecurityProfile_ProfileType, type SecurityProfile } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";

/** A seccomp profile larger than this is refused unread (docker's default profile is ~20 KiB). */
export const MAX_PROFILE_BYTES = 1 << 20;

/**
 * Reads a Localhost profile: a regular file of at most MAX_PROFILE_BYTES. A FIFO or device named
 * by a request must not hang or exhaust berthd, and its errors never quote what the file holds.
 */
export async function readSeccompProfileFile(file: string): Promise<string> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new InvalidArgument(`seccomp profile ${file} cannot be opened (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidArgument(`seccomp profile ${file} is not a regular file`);
    if (st.size > MAX_PROFILE_BYTES) throw new InvalidArgument(`seccomp profile ${file} is ${st.size} bytes; at most ${MAX_PROFILE_BYTES} are read`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface SeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38;

/** Syscalls RuntimeDefault refuses unless the container holds the capability that makes them meaningful. */
const DENIED: Array<{ names: string[]; unlessCap?: string[] }> = [
  { names: ["kexec_load", "kexec_file_load", "reboot"], unlessCap: ["CAP_SYS_BOOT"] },
  { names: ["init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms"], unlessCap: ["CAP_SYS_MODULE"] },
  { names: ["acct"], unlessCap: ["CAP_SYS_PACCT"] },
  { names: ["settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"], unlessCap: ["CAP_SYS_TIME"] },
  { names: ["iopl", "ioperm"], unlessCap: ["CAP_SYS_RAWIO"] },
  { names: ["process_vm_readv", "process_vm_writev", "kcmp"], unlessCap: ["CAP_SYS_PTRACE"] },
  { names: ["syslog"], unlessCap: ["CAP_SYSLOG"] },
  { names: ["mbind", "set_mempolicy", "move_pages", "get_mempolicy"], unlessCap: ["CAP_SYS_NICE"] },
  { names: ["bpf"], unlessCap: ["CAP_SYS_ADMIN", "CAP_BPF"] },
  { names: ["perf_event_open"], unlessCap: ["CAP_SYS_ADMIN", "CAP_PERFMON"] },
  {
    names: [
      "mount", "umount", "umount2", "pivot_root", "setns", "unshare", "swapon", "swapoff", "quotactl", "quotactl_fd",
      "lookup_dcookie", "name_to_handle_at", "open_by_handle_at", "fanotify_init", "fsopen", "fsconfig", "fsmount",
      "fspick", "move_mount", "open_tree", "mount_setattr", "setdomainname", "sethostname",
    ],
    unlessCap: ["CAP_SYS_ADMIN"],
  },
  { names: ["add_key", "keyctl", "request_key", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "userfaultfd"] },
];

/** Namespace flags of clone(2): creating namespaces needs CAP_SYS_ADMIN. */
const CLONE_NS_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

function architectures(arch: string): string[] {
  switch (arch) {
    case "x64": return ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
    case "arm64": return ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
    case "ppc64": return ["SCMP_ARCH_PPC64LE"];
    case "s390x": return ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"];
    default: return [];
  }
}

/** berth's RuntimeDefault profile: everything is allowed except the syscalls above, for the container's capabilities. */
export function defaultSeccompProfile(capabilities: string[], arch: string = process.arch): OciSeccomp {
  const has = (caps?: string[]) => caps !== undefined && caps.some((c) => capabilities.includes(c));
  const syscalls: SeccompRule[] = [];
  for (const d of DENIED) {
    if (!has(d.unlessCap)) syscalls.push({ names: [...d.names], action: "SCMP_ACT_ERRNO", errnoRet: EPERM });
  }
  if (!capabilities.includes("CAP_SYS_ADMIN")) {
    // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
    syscalls.push({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
    for (const flag of CLONE_NS_FLAGS) {
      syscalls.push({ names: ["clone"], action: "SCMP_ACT_ERRNO", errnoRet: EPERM, args: [{ index: arch === "s390x" ? 1 : 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ" }] });
    }
  }
  return { defaultAction: "SCMP_ACT_ALLOW", architectures: architectures(arch), syscalls };
}

export type SeccompChoice =
  | { kind: "unconfined" }
  | { kind: "runtime-default" }
  | { kind: "localhost"; path: string };

/**
 * What the request asks for: the structured field wins; the deprecated string comes next; with
 * neither, unconfined (the CRI's nil profile). Privileged containers are always unconfined.
 */
export function seccompChoice(structured: SecurityProfile | undefined, deprecatedPath: string, privileged: boolean): SeccompChoice {
  if (privileged) return { kind: "unconfined" };
  if (structured !== undefined) {
    switch (structured.profileType) {
      case SecurityProfile_ProfileType.RuntimeDefault: return { kind: "runtime-default" };
      case SecurityProfile_ProfileType.Unconfined: return { kind: "unconfined" };
      case SecurityProfile_ProfileType.Localhost: {
        const p = structured.localhostRef;
        if (!p.startsWith("/")) throw new InvalidArgument(`seccomp localhost_ref "${p}" must be an absolute path to a profile file`);
        return { kind: "localhost", path: p };
      }
      default: throw new InvalidArgument(`seccomp profile type ${structured.profileType} is not known`);
    }
  }
  const s = deprecatedPath;
  if (s === "" || s === "unconfined") return { kind: "unconfined" };
  if (s === "runtime/default" || s === "docker/default") return { kind: "runtime-default" };
  if (s.startsWith("localhost/")) {
    const p = s.slice("localhost/".length);
    if (!p.startsWith("/")) throw new InvalidArgument(`seccomp profile "${s}": the path after localhost/ must be absolute`);
    return { kind: "localhost", path: p };
  }
  throw new InvalidArgument(`seccomp profile "${s}" is not one of "runtime/default", "docker/default", "unconfined" or "localhost/<absolute path>"`);
}

interface DockerRule {
  name?: string;
  names?: string[];
  action: string;
  errnoRet?: number;
  args?: Array<{ index: number; value: number; valueTwo?: number; op: string }> | null;
  includes?: { caps?: string[]; arches?: string[] };
  excludes?: { caps?: string[]; arches?: string[] };
}

interface ProfileFile {
  defaultAction?: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: Array<{ architecture: string; subArchitectures?: string[] }>;
  flags?: string[];
  syscalls?: DockerRule[] | null;
}

/** Parses a Localhost profile (OCI or Docker JSON) into the OCI form for these capabilities. */
export function parseSeccompProfile(text: string, source: string, capabilities: string[], arch: string = process.arch): OciSeccomp {
  let doc: ProfileFile;
  try {
    doc = JSON.parse(text) as ProfileFile;
  } catch {
    // JSON.parse quotes the text it failed on: a request naming /etc/shadow would get its first bytes back.
    throw new InvalidArgument(`seccomp profile ${source} is not valid JSON`);
  }
  if (typeof doc !== "object" || doc === null || typeof doc.defaultAction !== "string") {
    throw new InvalidArgument(`seccomp profile ${source} has no defaultAction`);
  }
  const archs = architectures(arch);
  let profileArchs = doc.architectures ?? [];
  if (doc.archMap) {
    const mine = doc.archMap.find((m) => m.architecture === archs[0]);
    profileArchs = mine ? [mine.architecture, ...(mine.subArchitectures ?? [])] : [];
  }
  const syscalls: SeccompRule[] = [];
  for (const r of doc.syscalls ?? []) {
    const names = r.names ?? (r.name ? [r.name] : []);
    if (names.length === 0) continue;
    if (r.includes?.caps && !r.includes.caps.every((c) => capabilities.includes(c))) continue;
    if (r.excludes?.caps && r.excludes.caps.some((c) => capabilities.includes(c))) continue;
    if (r.includes?.arches && !r.includes.arches.some((a) => archs.includes(a) || archs.includes(`SCMP_ARCH_${a.toUpperCase()}`))) continue;
    const rule: SeccompRule = { names, action: r.action };
    if (r.errnoRet !== undefined) rule.errnoRet = r.errnoRet;
    if (r.args && r.args.length > 0) rule.args = r.args.map((a) => ({ index: a.index, value: a.value, ...(a.valueTwo ? { valueTwo: a.valueTwo } : {}), op: a.op }));
    syscalls.push(rule);
  }
  const out: OciSeccomp = { defaultAction: doc.defaultAction, syscalls };
  if (doc.defaultErrnoRet !== undefined) out.defaultErrnoRet = doc.defaultErrnoRet;
  if (profileArchs.length > 0) out.architectures = profileArchs;
  if (doc.flags) out.flags = doc.flags;
  return out;
}
