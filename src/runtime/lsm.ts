// AppArmor and SELinux for containers. Which AppArmor profile a container gets (the CRI's
// structured `apparmor` field or the deprecated `apparmor_profile` string), berth's default
// profile (text from a pure function, loaded with apparmor_parser when the kernel lacks it), and
// SELinux labels from SELinuxOption. The pure parts take the host's facts as a parameter.
import { readFile } from "node:fs/promises";
import { SecurityProfile_ProfileType, type LinuxContainerSecurityContext, type SELinuxOption } from "../gen/api.js";
import { FailedPrecondition, Internal, InvalidArgument } from "../errors.js";
import { runCaptured } from "../run-captured.js";

/** The name berth's RuntimeDefault profile is loaded under. */
export const BERTH_APPARMOR_PROFILE = "berth-default";

const PROFILES_FILE = "/sys/kernel/security/apparmor/profiles";

export type AppArmorChoice =
  | { kind: "none" }
  | { kind: "default"; name: string }
  | { kind: "localhost"; name: string };

type Requested = { kind: "unset" | "unconfined" | "runtime-default" } | { kind: "localhost"; name: string };

/** What the request asks for: the structured field wins over the deprecated string. */
function requestedAppArmor(sc: Pick<LinuxContainerSecurityContext, "apparmor" | "apparmorProfile"> | undefined): Requested {
  const p = sc?.apparmor;
  if (p) {
    switch (p.profileType) {
      case SecurityProfile_ProfileType.RuntimeDefault: return { kind: "runtime-default" };
      case SecurityProfile_ProfileType.Unconfined: return { kind: "unconfined" };
      case SecurityProfile_ProfileType.Localhost: {
        const name = p.localhostRef.replace(/^localhost\//, "");
        if (name === "") throw new InvalidArgument("apparmor profile_type Localhost needs localhost_ref (the name of a loaded profile)");
        return { kind: "localhost", name };
      }
      default: throw new InvalidArgument(`apparmor profile_type ${p.profileType} is not RuntimeDefault, Unconfined or Localhost`);
    }
  }
  const s = sc?.apparmorProfile ?? "";
  if (s === "") return { kind: "unset" };
  if (s === "runtime/default") return { kind: "runtime-default" };
  if (s === "unconfined") return { kind: "unconfined" };
  if (s.startsWith("localhost/") && s.length > "localhost/".length) return { kind: "localhost", name: s.slice("localhost/".length) };
  throw new InvalidArgument(`apparmor_profile "${s.slice(0, 200)}" is not "runtime/default", "unconfined" or "localhost/<profile>"`);
}

function describe(r: Requested): string {
  return r.kind === "localhost" ? `Localhost profile "${r.name}"` : "RuntimeDefault";
}

/**
 * The AppArmor profile a container runs under. Without AppArmor on the host only Unconfined or
 * nothing can be honoured; with it, RuntimeDefault (and an unset field, as the peers do) is
 * berth's default profile, except for privileged containers, which run unconfined.
 */
export function appArmorChoice(sc: LinuxContainerSecurityContext | undefined, host: { apparmor: boolean }): AppArmorChoice {
  const req = requestedAppArmor(sc);
  if (req.kind === "unset" || req.kind === "unconfined") {
    if (req.kind === "unconfined" || !host.apparmor || sc?.privileged) return { kind: "none" };
    return { kind: "default", name: BERTH_APPARMOR_PROFILE };
  }
  if (!host.apparmor) {
    throw new FailedPrecondition(`AppArmor ${describe(req)} requested but AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled is not Y): ask for Unconfined or leave the profile unset`);
  }
  if (req.kind === "localhost") return { kind: "localhost", name: req.name };
  return sc?.privileged ? { kind: "none" } : { kind: "default", name: BERTH_APPARMOR_PROFILE };
}

/**
 * berth's RuntimeDefault AppArmor profile: what a container normally does, but no mounts, no
 * writes to host-wide kernel settings under /proc/sys and /sys, no reads of kernel memory or
 * firmware, and signals and ptrace only among processes of the same profile.
 */
export function defaultAppArmorProfile(name: string = BERTH_APPARMOR_PROFILE): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new InvalidArgument(`AppArmor profile name "${name}" has characters a profile name cannot hold`);
  return [
    "#include <tunables/global>",
    "",
    `profile ${name} flags=(attach_disconnected,mediate_deleted) {`,
    "  #include <abstractions/base>",
    "",
    "  network,",
    "  capability,",
    "  file,",
    "  umount,",
    "  signal (receive) peer=unconfined,",
    `  signal (send,receive) peer=${name},`,
    `  ptrace (trace,read,tracedby,readby) peer=${name},`,
    "",
    "  deny mount,",
    "  deny pivot_root,",
    "  deny @{PROC}/sysrq-trigger rwklx,",
    "  deny @{PROC}/kcore rwklx,",
    "  deny @{PROC}/sys/{abi,debug,dev,fs,vm}/** w,",
    "  deny @{PROC}/sys/kernel/{core_pattern,hotplug,kexec_*,modprobe,panic*,poweroff_cmd,sysrq} w,",
    "  deny /sys/firmware/** rwklx,",
    "  deny /sys/kernel/{debug,security}/** rwklx,",
    "  deny /sys/{module,power}/** w,",
    "}",
    "",
  ].join("\n");
}

/** The profile names in the kernel's list (`name (mode)` per line). */
export function parseLoadedProfiles(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    const m = /^(.*) \((\w+)\)$/.exec(line.trim());
    if (m) out.add(m[1]!);
  }
  return out;
}

async function loadedProfiles(): Promise<Set<string>> {
  try {
    return parseLoadedProfiles(await readFile(PROFILES_FILE, "utf8"));
  } catch (err) {
    throw new FailedPrecondition(`cannot read the loaded AppArmor profiles (${PROFILES_FILE}): ${(err as Error).message}`);
  }
}

let defaultLoad: Promise<void> | undefined;

/**
 * Makes sure the chosen profile is in the kernel: berth's default is loaded with apparmor_parser
 * once when absent; a Localhost profile must have been loaded by the node's administrator.
 */
export async function ensureAppArmorProfile(choice: AppArmorChoice, parser = "apparmor_parser"): Promise<void> {
  if (choice.kind === "none") return;
  if (choice.kind === "localhost") {
    if (!(await loadedProfiles()).has(choice.name)) {
      throw new FailedPrecondition(`AppArmor profile "${choice.name}" is not loaded on this host: load it (apparmor_parser -r <file>) before starting the container`);
    }
    return;
  }
  defaultLoad ??= (async () => {
    if ((await loadedProfiles()).has(choice.name)) return;
    const r = await runCaptured(parser, ["-Kr"], { input: defaultAppArmorProfile(choice.name), timeoutMs: 30_000 });
    if (r.failed) throw new Internal(`loading berth's AppArmor profile "${choice.name}" with ${parser}: ${r.stderr.trim() || r.failedWhy || `exit code ${r.exitCode}`}`);
  })().catch((err: unknown) => {
    defaultLoad = undefined;
    throw err;
  });
  await defaultLoad;
}

export interface SelinuxLabels {
  processLabel?: string;
  mountLabel?: string;
  /** Set when options were given but the host has no SELinux: a line for the debug log. */
  ignored?: string;
}

/**
 * SELinux labels from a container's options, the unset parts filled with the container defaults.
 * On a host without SELinux the options are ignored: kubelet copies a pod's seLinuxOptions into
 * every container, so refusing them would make such pods unrunnable.
 */
export function selinuxLabels(opts: SELinuxOption | undefined, host: { selinux: boolean }): SelinuxLabels {
  if (!opts || !(opts.user || opts.role || opts.type || opts.level)) return {};
  const given = [opts.user, opts.role, opts.type, opts.level].join(":");
  if (!host.selinux) return { ignored: `SELinux options ${given} ignored: SELinux is not enabled on this host` };
  for (const [field, v] of Object.entries({ user: opts.user, role: opts.role, type: opts.type })) {
    if (v !== "" && !/^[A-Za-z0-9_.-]+$/.test(v)) throw new InvalidArgument(`selinux_options.${field} "${v.slice(0, 100)}" is not an SELinux identifier`);
  }
  if (opts.level !== "" && !/^s\d+(-s\d+)?(:c\d+([.,]c\d+)*)?$/.test(opts.level)) throw new InvalidArgument(`selinux_options.level "${opts.level.slice(0, 100)}" is not an MLS level such as s0:c1,c2`);
  const user = opts.user || "system_u";
  const level = opts.level || "s0";
  return {
    processLabel: `${user}:${opts.role || "system_r"}:${opts.type || "container_t"}:${level}`,
    mountLabel: `${user}:object_r:container_file_t:${level}`,
  };
}
