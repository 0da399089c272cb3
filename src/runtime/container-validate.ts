// Checks of a ContainerConfig that the spec generator does not make: names, env, args, mount
// paths (never into berth's own root or state), labels and annotations, resource values.
// Pure, so a bad request is refused before anything is created.
import { isUtf8 } from "node:buffer";
import path from "node:path";
import { checkImageVolume, imageVolumeRef } from "./container-mounts.js";
import { MountPropagation, mountPropagationToJSON, type ContainerConfig, type LinuxContainerResources, type Mount } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import { checkStringMap } from "./sandbox-config.js";

const CONTROL = /[\x00-\x1f\x7f]/;

export interface BerthDirs {
  root: string;
  state: string;
}

export function inside(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** Resource values runc or the kernel would refuse (or misread), named by field. */
export function validateResources(r: LinuxContainerResources): void {
  const bad = (field: string, v: bigint | string, want: string) => new InvalidArgument(`config.linux.resources.${field} ${v} is invalid: ${want}`);
  if (r.cpuShares !== 0n && (r.cpuShares < 2n || r.cpuShares > 262144n)) throw bad("cpu_shares", r.cpuShares, "0 (unset) or 2-262144");
  if (r.cpuPeriod !== 0n && (r.cpuPeriod < 1000n || r.cpuPeriod > 1_000_000n)) throw bad("cpu_period", r.cpuPeriod, "0 (unset) or 1000-1000000 microseconds");
  if (r.cpuQuota !== 0n && r.cpuQuota !== -1n && r.cpuQuota < 1000n) throw bad("cpu_quota", r.cpuQuota, "0 (unset), -1 (unlimited) or at least 1000 microseconds");
  if (r.memoryLimitInBytes < 0n) throw bad("memory_limit_in_bytes", r.memoryLimitInBytes, "0 (unset) or a positive number of bytes");
  if (r.memorySwapLimitInBytes < -1n) throw bad("memory_swap_limit_in_bytes", r.memorySwapLimitInBytes, "-1 (unlimited), 0 (unset) or a number of bytes");
  if (r.oomScoreAdj < -1000n || r.oomScoreAdj > 1000n) throw bad("oom_score_adj", r.oomScoreAdj, "-1000 to 1000");
  for (const [field, v] of [["cpuset_cpus", r.cpusetCpus], ["cpuset_mems", r.cpusetMems]] as const) {
    if (v !== "" && !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(v)) throw bad(field, JSON.stringify(v), 'a list such as "0-2,4"');
  }
  for (const h of r.hugepageLimits) {
    if (!/^\d+(KB|MB|GB)$/.test(h.pageSize)) throw bad("hugepage_limits.page_size", JSON.stringify(h.pageSize), 'a size such as "2MB" or "1GB"');
    if (h.limit < 0n) throw bad("hugepage_limits.limit", h.limit, "not negative");
  }
  for (const k of Object.keys(r.unified)) {
    if (!/^[a-z_]+\.[a-z0-9_.]+$/.test(k)) throw bad("unified key", JSON.stringify(k), 'a cgroup v2 file name such as "memory.high"');
  }
}

/** A recursive read-only mount must be read-only and private: a submount propagated in later would stay writable. */
export function checkRecursiveReadOnly(m: Pick<Mount, "containerPath" | "readonly" | "recursiveReadOnly" | "propagation">): void {
  if (!m.recursiveReadOnly) return;
  if (!m.readonly) throw new InvalidArgument(`mount ${m.containerPath}: recursive_read_only needs readonly: true as well`);
  if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) {
    throw new InvalidArgument(`mount ${m.containerPath}: recursive_read_only needs propagation PROPAGATION_PRIVATE, not ${mountPropagationToJSON(m.propagation)} (mounts propagated in later would not be read-only)`);
  }
}

/** Throws InvalidArgument naming the first bad field of a CreateContainer config. */
export function validateContainerConfig(config: ContainerConfig, dirs: BerthDirs): void {
  const name = config.metadata?.name ?? "";
  if (name === "" || name.length > 253 || /[\s;=/]/.test(name) || CONTROL.test(name)) {
    throw new InvalidArgument(`config.metadata.name ${JSON.stringify(name.slice(0, 300))} must be 1-253 characters without whitespace, control characters, "/", ";" or "="`);
  }
  if (CONTROL.test(config.image?.image ?? "")) throw new InvalidArgument("config.image.image must not contain control characters");
  for (const [field, list] of [["command", config.command], ["args", config.args]] as const) {
    if (list.some((a) => a.includes("\0"))) throw new InvalidArgument(`config.${field} must not contain NUL characters`);
  }
  if (config.workingDir.includes("\0")) throw new InvalidArgument("config.working_dir must not contain NUL characters");
  for (const { key, value } of config.envs) {
    // Newlines are fine in values (certificates from ConfigMaps), never in names.
    if (key === "" || key.includes("=") || CONTROL.test(key)) throw new InvalidArgument(`config.envs name ${JSON.stringify(key.slice(0, 100))} must be non-empty, without "=" or control characters (newlines included)`);
    if (value.includes(0)) throw new InvalidArgument(`config.envs ${key} must not contain NUL characters`);
    // The OCI runtime reads its config as JSON, which carries text only: bytes that are not UTF-8
    // would reach the process as U+FFFD, so they are refused rather than silently changed.
    if (!isUtf8(value)) throw new InvalidArgument(`config.envs ${key}: the value is not valid UTF-8; the OCI runtime config (JSON) cannot carry it byte for byte`);
  }
  for (const m of config.mounts) {
    for (const [field, p] of [["container_path", m.containerPath], ["host_path", m.hostPath]] as const) {
      if (CONTROL.test(p) || p.split("/").includes("..")) throw new InvalidArgument(`mount ${field} ${JSON.stringify(p.slice(0, 300))} must not contain ".." or control characters`);
    }
    if (!m.containerPath.startsWith("/")) throw new InvalidArgument(`mount container_path "${m.containerPath.slice(0, 300)}" must be absolute`);
    if (path.posix.normalize(m.containerPath) === "/") throw new InvalidArgument(`mount container_path "${m.containerPath}" would cover the container's root`);
    checkImageVolume(m);
    if (imageVolumeRef(m) !== undefined) continue;
    if (!m.hostPath.startsWith("/")) throw new InvalidArgument(`mount host_path "${m.hostPath.slice(0, 300)}" must be absolute`);
    const host = path.posix.normalize(m.hostPath);
    if (path.isAbsolute(host) && (inside(host, dirs.root) || inside(host, dirs.state))) {
      throw new InvalidArgument(`mount host_path "${m.hostPath}" would expose berth's own data (${dirs.root}, ${dirs.state}) to the container`);
    }
    checkRecursiveReadOnly(m);
  }
  checkStringMap("config.labels", config.labels);
  checkStringMap("config.annotations", config.annotations);
  if (config.linux?.resources) validateResources(config.linux.resources);
}
