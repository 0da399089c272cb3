// The OCI runtime spec (config.json) of a container: one pure function from the image config,
// the CRI ContainerConfig, the pod it joins and facts berth gathered about the host and the
// rootfs beforehand. Everything that touches the disk happens before this is called.
import { MountPropagation, NamespaceMode, SupplementalGroupsPolicy, type ContainerConfig, type LinuxContainerResources, type LinuxContainerSecurityContext } from "../gen/api.js";
import type { ImageRunConfig } from "../image/types.js";
import { FailedPrecondition, InvalidArgument } from "../errors.js";
import type { SandboxRef } from "./types.js";
import { defaultSeccompProfile, parseSeccompProfile, seccompChoice, type OciSeccomp, type SeccompChoice } from "./seccomp.js";
import { resolveUser, type ResolvedUser, type UserDb } from "./user.js";
import { checkRecursiveReadOnly } from "./container-validate.js";
import { appArmorChoice, selinuxLabels, type AppArmorChoice } from "./lsm.js";

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  umask?: number;
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable: string[];
  ambient: string[];
}

export interface OciProcess {
  terminal: boolean;
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: OciCapabilities;
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
  apparmorProfile?: string;
  selinuxLabel?: string;
}

export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface OciDeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface OciDevice {
  path: string;
  type: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface OciResources {
  devices?: OciDeviceRule[];
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  hugepageLimits?: Array<{ pageSize: string; limit: number }>;
  unified?: Record<string, string>;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    resources: OciResources;
    cgroupsPath: string;
    namespaces: Array<{ type: string; path?: string }>;
    uidMappings?: OciIdMapping[];
    gidMappings?: OciIdMapping[];
    devices: OciDevice[];
    sysctl?: Record<string, string>;
    seccomp?: OciSeccomp;
    maskedPaths?: string[];
    readonlyPaths?: string[];
    rootfsPropagation?: string;
    mountLabel?: string;
  };
}

/** Facts about the host that shape the spec (gathered once by the caller). */
export interface HostFacts {
  cgroupVersion: 1 | 2;
  /** berthd's own /proc/self/oom_score_adj. */
  ownOomScoreAdj: number;
  /** Never ask for an oom_score_adj below berthd's own (no CAP_SYS_RESOURCE). */
  restrictOomScoreAdj: boolean;
  apparmor: boolean;
  selinux: boolean;
  /** memory.memsw.* exists (cgroup v1) or memory.swap.max (v2): the swap limit can be set. */
  swapAccounting: boolean;
  arch?: string;
  /** The capabilities in berthd's own bounding set; a container can hold no others (runc fails on the rest). */
  capabilities?: readonly string[];
}

/** A device node resolved on the host (the caller stats the CRI device paths). */
export interface ResolvedDevice {
  containerPath: string;
  type: "c" | "b";
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
  permissions: string;
}

export interface SpecInput {
  id: string;
  config: ContainerConfig;
  /** The image config's `config` object. */
  image: ImageRunConfig;
  /** The image name the container was created from (for annotations). */
  imageName: string;
  sandbox: SandboxRef;
  rootfs: string;
  cgroupsPath: string;
  userDb: UserDb;
  host: HostFacts;
  /** CRI devices resolved on the host; for a privileged container, every host device. */
  devices: ResolvedDevice[];
  /** Text of Localhost seccomp profile files, by path (see seccompFileNeeded). */
  seccompFiles: Record<string, string>;
  /** /proc/<pid>/ns/pid of the target container, for NamespaceMode.TARGET. */
  targetPidnsPath?: string;
  /** What the pod's OCI runtime handler can do (handler-features.ts). */
  handler: { recursiveReadOnlyMounts: boolean };
}

export interface SpecResult {
  spec: OciSpec;
  user: ResolvedUser;
  seccomp: SeccompChoice;
  /** The AppArmor profile the spec names; the caller makes sure it is loaded (lsm.ts). */
  apparmor: AppArmorChoice;
  /** Request parts that were ignored, with why: for the debug log. */
  ignored: string[];
}

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The capabilities a container gets without add/drop (the same set containerd gives). */
export const DEFAULT_CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/** Every capability Linux defines (0..40). */
export const ALL_CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
  "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
  "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
  "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

export const DEFAULT_MASKED_PATHS = [
  "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
  "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
];

export const DEFAULT_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/** The process args by the Kubernetes rules: command replaces Entrypoint (and drops Cmd); args replace Cmd. */
export function containerArgs(config: Pick<ContainerConfig, "command" | "args">, image: ImageRunConfig): string[] {
  let args: string[];
  if (config.command.length > 0) args = [...config.command, ...config.args];
  else if (config.args.length > 0) args = [...(image.Entrypoint ?? []), ...config.args];
  else args = [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])];
  if (args.length === 0) {
    throw new InvalidArgument("no command to run: the container config has no command or args and the image has no Entrypoint or Cmd");
  }
  return args;
}

/** Image env, then the config's env (a later value replaces an earlier one of the same name). */
export function containerEnv(image: ImageRunConfig, config: Pick<ContainerConfig, "envs">, extra: { hostname: string; home: string }): string[] {
  const order: string[] = [];
  const values = new Map<string, string>();
  const set = (k: string, v: string) => {
    if (!values.has(k)) order.push(k);
    values.set(k, v);
  };
  set("PATH", DEFAULT_PATH);
  if (extra.hostname) set("HOSTNAME", extra.hostname);
  for (const e of image.Env ?? []) {
    const i = e.indexOf("=");
    if (i <= 0) continue;
    set(e.slice(0, i), e.slice(i + 1));
  }
  for (const kv of config.envs) {
    if (kv.key === "") continue;
    set(kv.key, Buffer.from(kv.value).toString("utf8"));
  }
  if (!values.has("HOME")) set("HOME", extra.home);
  return order.map((k) => `${k}=${values.get(k)}`);
}

function capName(c: string): string {
  const up = c.trim().toUpperCase();
  return up.startsWith("CAP_") ? up : `CAP_${up}`;
}

/**
 * Default set, then add ALL / drop ALL, then single adds, then single drops; all of it limited
 * to what berthd itself may hand out (privileged and ALL mean "every capability berthd has").
 */
export function containerCapabilities(sc: LinuxContainerSecurityContext | undefined, hostCaps: readonly string[] = ALL_CAPABILITIES): OciCapabilities {
  const held = (caps: string[]) => caps.filter((c) => hostCaps.includes(c));
  if (sc?.privileged) return capSet(held([...ALL_CAPABILITIES]), []);
  const add = (sc?.capabilities?.addCapabilities ?? []).map(capName);
  const drop = (sc?.capabilities?.dropCapabilities ?? []).map(capName);
  let caps = [...DEFAULT_CAPABILITIES];
  if (add.includes("CAP_ALL")) caps = [...ALL_CAPABILITIES];
  if (drop.includes("CAP_ALL")) caps = [];
  for (const c of add) {
    if (c === "CAP_ALL") continue;
    if (!ALL_CAPABILITIES.includes(c)) throw new InvalidArgument(`unknown capability "${c}" in add_capabilities`);
    if (!caps.includes(c)) caps.push(c);
  }
  for (const c of drop) {
    if (c === "CAP_ALL") continue;
    if (!ALL_CAPABILITIES.includes(c)) throw new InvalidArgument(`unknown capability "${c}" in drop_capabilities`);
    caps = caps.filter((x) => x !== c);
  }
  caps = held(caps);
  const ambient = (sc?.capabilities?.addAmbientCapabilities ?? []).map(capName).filter((c) => caps.includes(c));
  return capSet(caps, ambient);
}

function capSet(caps: string[], ambient: string[]): OciCapabilities {
  // The kernel keeps an ambient capability only while it is also inheritable (and permitted);
  // nothing else is inheritable, so file capabilities of an exec'd binary gain no more (CVE-2022-24769).
  return { bounding: [...caps], effective: [...caps], permitted: [...caps], inheritable: [...ambient], ambient };
}

/** The path of the Localhost seccomp profile the request needs, so the caller can read it first. */
export function seccompFileNeeded(config: ContainerConfig): string | undefined {
  const sc = config.linux?.securityContext;
  const choice = seccompChoice(sc?.seccomp, sc?.seccompProfilePath ?? "", sc?.privileged ?? false);
  return choice.kind === "localhost" ? choice.path : undefined;
}

/** The oom_score_adj the container gets: the request, clamped to the kernel's range and, when lowering is not permitted, to berthd's own. */
export function effectiveOomScoreAdj(requested: number, host: Pick<HostFacts, "ownOomScoreAdj" | "restrictOomScoreAdj">): number {
  let v = Math.max(-1000, Math.min(1000, requested));
  if (host.restrictOomScoreAdj && v < host.ownOomScoreAdj) v = host.ownOomScoreAdj;
  return v;
}

function propagationOption(p: MountPropagation): string {
  switch (p) {
    case MountPropagation.PROPAGATION_HOST_TO_CONTAINER: return "rslave";
    case MountPropagation.PROPAGATION_BIDIRECTIONAL: return "rshared";
    default: return "rprivate";
  }
}

function clean(p: string): string {
  const parts: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") parts.pop();
    else parts.push(c);
  }
  return "/" + parts.join("/");
}

/** The OCI resources for the CRI's LinuxContainerResources (only what is set). */
export function ociResources(r: LinuxContainerResources | undefined, host: Pick<HostFacts, "cgroupVersion" | "swapAccounting">): Omit<OciResources, "devices"> {
  const out: Omit<OciResources, "devices"> = {};
  if (!r) return out;
  const cpu: NonNullable<OciResources["cpu"]> = {};
  if (r.cpuShares > 0n) cpu.shares = Number(r.cpuShares);
  if (r.cpuQuota > 0n) cpu.quota = Number(r.cpuQuota);
  if (r.cpuPeriod > 0n) cpu.period = Number(r.cpuPeriod);
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  const memory: NonNullable<OciResources["memory"]> = {};
  if (r.memoryLimitInBytes > 0n) {
    memory.limit = Number(r.memoryLimitInBytes);
    if (host.swapAccounting) {
      // No swap beyond the limit unless the request grants some (kubelet's default).
      memory.swap = r.memorySwapLimitInBytes > 0n ? Number(r.memorySwapLimitInBytes) : memory.limit;
    }
  } else if (r.memorySwapLimitInBytes > 0n && host.swapAccounting) {
    memory.swap = Number(r.memorySwapLimitInBytes);
  }
  if (Object.keys(memory).length > 0) out.memory = memory;
  if (r.hugepageLimits.length > 0) out.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: Number(h.limit) }));
  const unified = Object.entries(r.unified ?? {});
  if (unified.length > 0) {
    if (host.cgroupVersion !== 2) throw new InvalidArgument(`resources.unified (${unified.map(([k]) => k).join(", ")}) needs cgroup v2; this host runs cgroup v1`);
    out.unified = Object.fromEntries(unified);
  }
  return out;
}

function namespaceMode(m: NamespaceMode | undefined): NamespaceMode {
  return m ?? NamespaceMode.POD;
}

export function buildSpec(input: SpecInput): SpecResult {
  const { config, sandbox, host } = input;
  const sc = config.linux?.securityContext;
  const privileged = sc?.privileged ?? false;
  if (privileged && !sandbox.privileged) {
    throw new InvalidArgument("a privileged container needs a privileged pod (the pod's security context is not privileged)");
  }
  if (!config.metadata?.name) throw new InvalidArgument("container config has no metadata.name");

  const apparmor = appArmorChoice(sc, host);
  const selinux = selinuxLabels(sc?.selinuxOptions, host);
  const ignored = selinux.ignored ? [selinux.ignored] : [];

  if (sc?.runAsGroup !== undefined && sc.runAsUser === undefined && !sc.runAsUsername) {
    throw new InvalidArgument(`run_as_group ${sc.runAsGroup.value} is set without run_as_user or run_as_username`);
  }
  const user = resolveUser(
    {
      runAsUser: sc?.runAsUser?.value,
      runAsUsername: sc?.runAsUsername || undefined,
      runAsGroup: sc?.runAsGroup?.value,
      supplementalGroups: sc?.supplementalGroups,
      strictGroups: sc?.supplementalGroupsPolicy === SupplementalGroupsPolicy.Strict,
      imageUser: input.image.User,
    },
    input.userDb,
  );

  const capabilities = containerCapabilities(sc, host.capabilities);
  const seccomp = seccompChoice(sc?.seccomp, sc?.seccompProfilePath ?? "", privileged);
  let seccompSpec: OciSeccomp | undefined;
  if (seccomp.kind === "runtime-default") seccompSpec = defaultSeccompProfile(capabilities.bounding, host.arch);
  else if (seccomp.kind === "localhost") {
    const text = input.seccompFiles[seccomp.path];
    if (text === undefined) throw new InvalidArgument(`seccomp profile file ${seccomp.path} could not be read`);
    seccompSpec = parseSeccompProfile(text, seccomp.path, capabilities.bounding, host.arch);
  }

  const process: OciProcess = {
    terminal: config.tty,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    args: containerArgs(config, input.image),
    env: containerEnv(input.image, config, { hostname: sandbox.hostname, home: user.home }),
    cwd: config.workingDir || input.image.WorkingDir || "/",
    capabilities,
    noNewPrivileges: sc?.noNewPrivs ?? false,
  };
  if (apparmor.kind !== "none") process.apparmorProfile = apparmor.name;
  if (selinux.processLabel) process.selinuxLabel = selinux.processLabel;
  const requestedOom = Number(config.linux?.resources?.oomScoreAdj ?? 0n);
  process.oomScoreAdj = effectiveOomScoreAdj(requestedOom, host);
  if (!process.cwd.startsWith("/")) throw new InvalidArgument(`working_dir "${process.cwd}" must be an absolute path`);

  const readonlyRootfs = sc?.readonlyRootfs ?? false;
  const mounts = buildMounts(config, sandbox, privileged, readonlyRootfs, input.handler);

  const namespaces = buildNamespaces(input);

  const deviceRules: OciDeviceRule[] = privileged ? [{ allow: true, access: "rwm" }] : [{ allow: false, access: "rwm" }];
  const devices: OciDevice[] = [];
  for (const d of input.devices) {
    devices.push({ path: d.containerPath, type: d.type, major: d.major, minor: d.minor, fileMode: d.fileMode, uid: d.uid, gid: d.gid });
    if (!privileged) deviceRules.push({ allow: true, type: d.type, major: d.major, minor: d.minor, access: d.permissions || "rwm" });
  }

  const resources: OciResources = { devices: deviceRules, ...ociResources(config.linux?.resources, host) };

  const annotations: Record<string, string> = {
    ...config.annotations,
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.container-name": config.metadata.name,
    "io.kubernetes.cri.sandbox-id": sandbox.id,
    "io.kubernetes.cri.sandbox-name": sandbox.metadata.name,
    "io.kubernetes.cri.sandbox-namespace": sandbox.metadata.namespace,
    "io.kubernetes.cri.sandbox-uid": sandbox.metadata.uid,
    "io.kubernetes.cri.image-name": input.imageName,
  };

  const linux: OciSpec["linux"] = {
    resources,
    cgroupsPath: input.cgroupsPath,
    namespaces,
    devices,
  };
  if (sandbox.userns) {
    // runc 1.1 joins the pinned namespace by path and still needs the maps (for the ids it chowns to).
    linux.uidMappings = [{ containerID: sandbox.userns.uids.containerId, hostID: sandbox.userns.uids.hostId, size: sandbox.userns.uids.length }];
    linux.gidMappings = [{ containerID: sandbox.userns.gids.containerId, hostID: sandbox.userns.gids.hostId, size: sandbox.userns.gids.length }];
  }
  if (Object.keys(sandbox.sysctls).length > 0) linux.sysctl = { ...sandbox.sysctls };
  if (seccompSpec) linux.seccomp = seccompSpec;
  if (selinux.mountLabel) linux.mountLabel = selinux.mountLabel;
  if (!privileged) {
    linux.maskedPaths = sc?.maskedPaths?.length ? [...sc.maskedPaths] : [...DEFAULT_MASKED_PATHS];
    linux.readonlyPaths = sc?.readonlyPaths?.length ? [...sc.readonlyPaths] : [...DEFAULT_READONLY_PATHS];
  }
  const props = config.mounts.map((m) => m.propagation);
  if (props.includes(MountPropagation.PROPAGATION_BIDIRECTIONAL)) linux.rootfsPropagation = "rshared";
  else if (props.includes(MountPropagation.PROPAGATION_HOST_TO_CONTAINER)) linux.rootfsPropagation = "rslave";

  const spec: OciSpec = {
    ociVersion: "1.0.2-dev",
    process,
    root: { path: input.rootfs, readonly: readonlyRootfs },
    mounts,
    annotations,
    linux,
  };
  return { spec, user, seccomp, apparmor, ignored };
}

function buildNamespaces(input: SpecInput): Array<{ type: string; path?: string }> {
  const { sandbox, config, host } = input;
  const opts = config.linux?.securityContext?.namespaceOptions;
  const ns: Array<{ type: string; path?: string }> = [{ type: "mount" }];
  if (sandbox.userns) ns.push({ type: "user", path: sandbox.userns.path });
  const netMode = namespaceMode(opts?.network ?? sandbox.namespaceOptions.network);
  if (netMode !== NamespaceMode.NODE && sandbox.netnsPath) ns.push({ type: "network", path: sandbox.netnsPath });
  const ipcMode = namespaceMode(opts?.ipc ?? sandbox.namespaceOptions.ipc);
  if (ipcMode !== NamespaceMode.NODE && sandbox.ipcnsPath) ns.push({ type: "ipc", path: sandbox.ipcnsPath });
  if (sandbox.utsnsPath) ns.push({ type: "uts", path: sandbox.utsnsPath });
  const pidMode = namespaceMode(opts?.pid);
  switch (pidMode) {
    case NamespaceMode.NODE:
      break;
    case NamespaceMode.POD:
      // POD is the proto default: a pod that keeps no shared PID namespace gives a private one.
      if (sandbox.pidnsPath) ns.push({ type: "pid", path: sandbox.pidnsPath });
      else if (sandbox.namespaceOptions.pid !== NamespaceMode.NODE) ns.push({ type: "pid" });
      break;
    case NamespaceMode.TARGET:
      if (!input.targetPidnsPath) throw new InvalidArgument(`PID namespace mode TARGET needs a running target container (target_id "${opts?.targetId ?? ""}")`);
      ns.push({ type: "pid", path: input.targetPidnsPath });
      break;
    default:
      ns.push({ type: "pid" });
  }
  if (host.cgroupVersion === 2 && !config.linux?.securityContext?.privileged) ns.push({ type: "cgroup" });
  return ns;
}

function buildMounts(config: ContainerConfig, sandbox: SandboxRef, privileged: boolean, readonlyRootfs: boolean, handler: SpecInput["handler"]): OciMount[] {
  const wanted = new Set(config.mounts.map((m) => clean(m.containerPath)));
  const out: OciMount[] = [];
  const add = (m: OciMount) => {
    if (!wanted.has(m.destination)) out.push(m);
  };
  add({ destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] });
  add({ destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] });
  add({ destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] });
  add({ destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] });
  add({ destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", privileged ? "rw" : "ro"] });
  add({ destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", privileged ? "rw" : "ro"] });
  if (sandbox.shmPath) add({ destination: "/dev/shm", type: "bind", source: sandbox.shmPath, options: ["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"] });
  else add({ destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] });
  const podFile = readonlyRootfs ? "ro" : "rw";
  if (sandbox.hostsPath) add({ destination: "/etc/hosts", type: "bind", source: sandbox.hostsPath, options: ["rbind", "rprivate", podFile] });
  if (sandbox.hostnamePath) add({ destination: "/etc/hostname", type: "bind", source: sandbox.hostnamePath, options: ["rbind", "rprivate", podFile] });
  if (sandbox.resolvConfPath) add({ destination: "/etc/resolv.conf", type: "bind", source: sandbox.resolvConfPath, options: ["rbind", "rprivate", podFile] });

  const user = [...config.mounts].sort((a, b) => depth(a.containerPath) - depth(b.containerPath));
  for (const m of user) {
    if (!m.containerPath.startsWith("/")) throw new InvalidArgument(`mount container_path "${m.containerPath}" must be absolute`);
    if (!m.hostPath.startsWith("/")) throw new InvalidArgument(`mount host_path "${m.hostPath}" must be absolute`);
    if (m.uidMappings.length > 0 || m.gidMappings.length > 0) throw new InvalidArgument(`mount ${m.containerPath}: id-mapped mounts are not supported`);
    checkRecursiveReadOnly(m);
    if (m.recursiveReadOnly && !handler.recursiveReadOnlyMounts) {
      throw new FailedPrecondition(`mount ${m.containerPath}: recursive_read_only needs mount_setattr (Linux 5.12 or later) and an OCI runtime that knows the "rro" mount option; runtime handler "${sandbox.runtimeHandler}" lacks one of them (Status lists recursive_read_only_mounts per handler)`);
    }
    if (m.image?.image) throw new InvalidArgument(`mount ${m.containerPath}: image volumes are not supported`);
    out.push({
      destination: clean(m.containerPath),
      type: "bind",
      source: m.hostPath,
      // "rro" makes every submount read-only too (runc: mount_setattr with AT_RECURSIVE).
      options: ["rbind", propagationOption(m.propagation), m.readonly ? "ro" : "rw", ...(m.recursiveReadOnly ? ["rro"] : [])],
    });
  }
  return out;
}

function depth(p: string): number {
  return clean(p).split("/").filter((c) => c !== "").length;
}
