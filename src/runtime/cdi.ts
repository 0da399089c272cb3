// CDI (Container Device Interface, github.com/cncf-tags/container-device-interface SPEC.md):
// vendors describe devices in spec files (JSON or YAML) under /etc/cdi and /var/run/cdi; a
// container asks for "vendor.com/class=name" through ContainerConfig.CDI_devices or a
// cdi.k8s.io/<key> annotation, and the device's container edits (device nodes, mounts, env,
// hooks, additional gids) are applied to its OCI spec. Spec files are re-read when they change.
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { ContainerConfig } from "../gen/api.js";
import { FailedPrecondition, InvalidArgument, isErrno } from "../errors.js";
import type { Logger } from "../log.js";
import { parseYamlSubset } from "./cdi-yaml.js";
import type { OciDevice, OciDeviceRule, OciMount, OciSpec } from "./spec.js";
import { deviceAt } from "./container-host.js";

export const CDI_ANNOTATION_PREFIX = "cdi.k8s.io/";

export interface CdiDeviceNode {
  path: string;
  hostPath?: string;
  type?: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  permissions?: string;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  type?: string;
  options?: string[];
}

export interface CdiHook {
  hookName: string;
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface CdiContainerEdits {
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  mounts?: CdiMount[];
  hooks?: CdiHook[];
  additionalGids?: number[];
}

/** Edits ready for the spec: every device node has its type and numbers (looked up on the host). */
export interface ResolvedCdiEdits {
  env: string[];
  deviceNodes: Array<OciDevice & { permissions: string }>;
  mounts: CdiMount[];
  hooks: CdiHook[];
  additionalGids: number[];
}

export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type OciHooks = Partial<Record<(typeof HOOK_NAMES)[number], OciHook[]>>;

/** The OCI spec with the hooks CDI may add (berth itself sets none). */
export type OciSpecWithHooks = OciSpec & { hooks?: OciHooks };

const HOOK_NAMES = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] as const;
const VENDOR = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const CLASS = /^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9])?$/;
const DEVICE = /^[a-zA-Z0-9](?:[a-zA-Z0-9_.:-]*[a-zA-Z0-9])?$/;
const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$/;
/** The newest CDI spec version whose fields berth knows. */
const MAX_VERSION = [1, 0, 0] as const;
const PERMS = /^[rwm]{1,3}$/;
/** Spec files are a few KiB; a bigger one is skipped rather than read into memory. */
const MAX_SPEC_BYTES = 4 << 20;

/** Splits "vendor.com/class=name"; throws InvalidArgument saying what is wrong. */
export function parseQualifiedName(name: string): { kind: string; device: string } {
  const eq = name.indexOf("=");
  const slash = name.indexOf("/");
  if (eq < 0 || slash < 0 || slash > eq) throw new InvalidArgument(`CDI device "${name}" is not a fully-qualified name (vendor.com/class=name)`);
  const vendor = name.slice(0, slash);
  const cls = name.slice(slash + 1, eq);
  const device = name.slice(eq + 1);
  if (!VENDOR.test(vendor) || vendor.length > 253) throw new InvalidArgument(`CDI device "${name}": vendor "${vendor}" is not a DNS subdomain`);
  if (!CLASS.test(cls) || cls.length > 63) throw new InvalidArgument(`CDI device "${name}": class "${cls}" must be 1-63 of [A-Za-z0-9_.-], starting and ending alphanumeric`);
  if (!DEVICE.test(device)) throw new InvalidArgument(`CDI device "${name}": device name "${device}" must be of [A-Za-z0-9_.:-], starting and ending alphanumeric`);
  return { kind: `${vendor}/${cls}`, device };
}

/** The CDI devices a container asks for: CDI_devices first, then cdi.k8s.io/* annotations (by key), each once. */
export function requestedCdiDevices(config: Pick<ContainerConfig, "CDIDevices" | "annotations">): string[] {
  const names: string[] = (config.CDIDevices ?? []).map((d) => d.name);
  const annotations = config.annotations ?? {};
  for (const key of Object.keys(annotations).sort()) {
    if (!key.startsWith(CDI_ANNOTATION_PREFIX)) continue;
    names.push(...annotations[key]!.split(",").map((n) => n.trim()).filter((n) => n !== ""));
  }
  return [...new Set(names)];
}

// ---- spec files -----------------------------------------------------------------------

export interface CdiSpec {
  cdiVersion: string;
  kind: string;
  devices: Map<string, CdiContainerEdits>;
  containerEdits: CdiContainerEdits;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class SpecError extends Error {}

function strings(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) throw new SpecError(`${what} must be a list of strings`);
  return v as string[];
}

function optInt(v: unknown, what: string, min = 0): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) throw new SpecError(`${what} must be an integer >= ${min}`);
  return v;
}

function optString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new SpecError(`${what} must be a string`);
  return v;
}

/** Absolute, and no ".." component: edits name host and container paths exactly. */
function absPath(v: unknown, what: string): string {
  if (typeof v !== "string" || !v.startsWith("/")) throw new SpecError(`${what} must be an absolute path, got ${JSON.stringify(v)}`);
  if (v.split("/").includes("..")) throw new SpecError(`${what} "${v}" must not contain ".."`);
  return v;
}

function parseEdits(v: unknown, where: string): CdiContainerEdits {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new SpecError(`${where} must be a mapping`);
  const known = new Set(["env", "deviceNodes", "mounts", "hooks", "additionalGids", "intelRdt"]);
  for (const k of Object.keys(v)) if (!known.has(k)) throw new SpecError(`${where}.${k} is not a CDI container edit`);
  if (v.intelRdt !== undefined && v.intelRdt !== null) throw new SpecError(`${where}.intelRdt is not supported by berth`);
  const edits: CdiContainerEdits = {};
  const env = strings(v.env, `${where}.env`);
  if (env) {
    for (const e of env) if (!/^[^=]+=/.test(e)) throw new SpecError(`${where}.env entry ${JSON.stringify(e)} is not NAME=value`);
    edits.env = env;
  }
  if (v.deviceNodes !== undefined && v.deviceNodes !== null) {
    if (!Array.isArray(v.deviceNodes)) throw new SpecError(`${where}.deviceNodes must be a list`);
    edits.deviceNodes = v.deviceNodes.map((d: unknown, i) => {
      const w = `${where}.deviceNodes[${i}]`;
      if (!isObj(d)) throw new SpecError(`${w} must be a mapping`);
      const node: CdiDeviceNode = { path: absPath(d.path, `${w}.path`) };
      if (d.hostPath !== undefined && d.hostPath !== null) node.hostPath = absPath(d.hostPath, `${w}.hostPath`);
      const type = optString(d.type, `${w}.type`);
      if (type !== undefined && type !== "") {
        if (!["c", "b", "u", "p"].includes(type)) throw new SpecError(`${w}.type "${type}" must be c, b, u or p`);
        node.type = type;
      }
      node.major = optInt(d.major, `${w}.major`);
      node.minor = optInt(d.minor, `${w}.minor`);
      node.fileMode = optInt(d.fileMode, `${w}.fileMode`);
      node.uid = optInt(d.uid, `${w}.uid`);
      node.gid = optInt(d.gid, `${w}.gid`);
      const perms = optString(d.permissions, `${w}.permissions`);
      if (perms !== undefined && perms !== "") {
        if (!PERMS.test(perms)) throw new SpecError(`${w}.permissions "${perms}" must be made of r, w and m`);
        node.permissions = perms;
      }
      return node;
    });
  }
  if (v.mounts !== undefined && v.mounts !== null) {
    if (!Array.isArray(v.mounts)) throw new SpecError(`${where}.mounts must be a list`);
    edits.mounts = v.mounts.map((m: unknown, i) => {
      const w = `${where}.mounts[${i}]`;
      if (!isObj(m)) throw new SpecError(`${w} must be a mapping`);
      const mount: CdiMount = { hostPath: absPath(m.hostPath, `${w}.hostPath`), containerPath: absPath(m.containerPath, `${w}.containerPath`) };
      const type = optString(m.type, `${w}.type`);
      if (type) mount.type = type;
      const options = strings(m.options, `${w}.options`);
      if (options) mount.options = options;
      return mount;
    });
  }
  if (v.hooks !== undefined && v.hooks !== null) {
    if (!Array.isArray(v.hooks)) throw new SpecError(`${where}.hooks must be a list`);
    edits.hooks = v.hooks.map((h: unknown, i) => {
      const w = `${where}.hooks[${i}]`;
      if (!isObj(h)) throw new SpecError(`${w} must be a mapping`);
      if (typeof h.hookName !== "string" || !(HOOK_NAMES as readonly string[]).includes(h.hookName)) {
        throw new SpecError(`${w}.hookName ${JSON.stringify(h.hookName)} must be one of ${HOOK_NAMES.join(", ")}`);
      }
      const hook: CdiHook = { hookName: h.hookName, path: absPath(h.path, `${w}.path`) };
      const args = strings(h.args, `${w}.args`);
      if (args) hook.args = args;
      const env = strings(h.env, `${w}.env`);
      if (env) hook.env = env;
      const timeout = optInt(h.timeout, `${w}.timeout`, 1);
      if (timeout !== undefined) hook.timeout = timeout;
      return hook;
    });
  }
  if (v.additionalGids !== undefined && v.additionalGids !== null) {
    if (!Array.isArray(v.additionalGids)) throw new SpecError(`${where}.additionalGids must be a list`);
    edits.additionalGids = v.additionalGids.map((g: unknown, i) => optInt(g, `${where}.additionalGids[${i}]`)!).filter((g) => g !== 0);
  }
  return edits;
}

/** Parses and validates one spec file's text (JSON, or the YAML subset of cdi-yaml.ts); throws with the reason. */
export function parseCdiSpec(text: string, format: "json" | "yaml"): CdiSpec {
  let doc: unknown;
  try {
    doc = format === "json" ? JSON.parse(text) : parseYamlSubset(text);
  } catch (err) {
    throw new SpecError(`not valid ${format.toUpperCase()}: ${(err as Error).message}`);
  }
  if (!isObj(doc)) throw new SpecError("the document is not a mapping");
  const version = doc.cdiVersion;
  const m = typeof version === "string" ? SEMVER.exec(version) : null;
  if (!m) throw new SpecError(`cdiVersion ${JSON.stringify(version)} is not a semantic version`);
  const v = [Number(m[1]), Number(m[2]), Number(m[3])];
  const newer = v[0]! > MAX_VERSION[0] || (v[0] === MAX_VERSION[0] && (v[1]! > MAX_VERSION[1] || (v[1] === MAX_VERSION[1] && v[2]! > MAX_VERSION[2])));
  if (newer) throw new SpecError(`cdiVersion ${version} is newer than berth knows (${MAX_VERSION.join(".")})`);
  if (typeof doc.kind !== "string") throw new SpecError("kind is missing");
  const kind = doc.kind;
  const slash = kind.indexOf("/");
  if (slash < 0 || !VENDOR.test(kind.slice(0, slash)) || !CLASS.test(kind.slice(slash + 1)) || kind.length - slash - 1 > 63) {
    throw new SpecError(`kind "${kind}" is not vendor.com/class`);
  }
  if (!Array.isArray(doc.devices) || doc.devices.length === 0) throw new SpecError("devices must list at least one device");
  const devices = new Map<string, CdiContainerEdits>();
  doc.devices.forEach((d: unknown, i) => {
    if (!isObj(d)) throw new SpecError(`devices[${i}] must be a mapping`);
    if (typeof d.name !== "string" || !DEVICE.test(d.name)) throw new SpecError(`devices[${i}].name ${JSON.stringify(d.name)} is not a valid device name`);
    if (devices.has(d.name)) throw new SpecError(`device "${d.name}" is defined twice`);
    devices.set(d.name, parseEdits(d.containerEdits, `devices[${i}].containerEdits`));
  });
  return { cdiVersion: version as string, kind, devices, containerEdits: parseEdits(doc.containerEdits, "containerEdits") };
}

// ---- applying edits -------------------------------------------------------------------

/**
 * The spec with CDI edits applied (the input is not changed): env entries replace same-named
 * ones, device nodes and mounts replace entries at the same container path, each device node gets
 * its cgroup rule, hooks are appended in order, additional gids are added once.
 */
export function applyCdiEdits(spec: OciSpecWithHooks, edits: ResolvedCdiEdits): OciSpecWithHooks {
  const envName = (e: string) => {
    const eq = e.indexOf("=");
    return eq < 0 ? e : e.slice(0, eq);
  };
  const newEnv = new Set(edits.env.map(envName));
  const env = [...spec.process.env.filter((e) => !newEnv.has(envName(e))), ...lastBy(edits.env, envName)];

  const gids = [...(spec.process.user.additionalGids ?? [])];
  for (const g of edits.additionalGids) if (!gids.includes(g)) gids.push(g);
  const user = { ...spec.process.user };
  if (gids.length > 0) user.additionalGids = gids;

  // Two requested devices may name the same node or mount target: the later one wins.
  const nodes = lastBy(edits.deviceNodes, (d) => d.path);
  const nodePaths = new Set(nodes.map((d) => d.path));
  const devices: OciDevice[] = [
    ...spec.linux.devices.filter((d) => !nodePaths.has(d.path)),
    ...nodes.map(({ permissions: _p, ...d }) => d),
  ];
  const rules: OciDeviceRule[] = [...(spec.linux.resources.devices ?? [])];
  for (const d of nodes) {
    if (d.type === "p") continue;
    rules.push({ allow: true, type: d.type === "u" ? "c" : d.type, major: d.major, minor: d.minor, access: d.permissions });
  }

  const cdiMounts = lastBy(edits.mounts, (m) => m.containerPath);
  const mountPaths = new Set(cdiMounts.map((m) => m.containerPath));
  const mounts: OciMount[] = [
    ...spec.mounts.filter((m) => !mountPaths.has(m.destination)),
    ...cdiMounts.map((m) => ociMount(m)),
  ];

  const out: OciSpecWithHooks = {
    ...spec,
    process: { ...spec.process, env, user },
    mounts,
    linux: { ...spec.linux, devices, resources: { ...spec.linux.resources, devices: rules } },
  };
  if (edits.hooks.length > 0) {
    const hooks: OciHooks = {};
    for (const [k, v] of Object.entries(spec.hooks ?? {})) hooks[k as keyof OciHooks] = [...v];
    for (const h of edits.hooks) {
      const oci: OciHook = { path: h.path };
      if (h.args) oci.args = h.args;
      if (h.env) oci.env = h.env;
      if (h.timeout !== undefined) oci.timeout = h.timeout;
      (hooks[h.hookName as keyof OciHooks] ??= []).push(oci);
    }
    out.hooks = hooks;
  }
  return out;
}

/** The items in order, keeping only the last one of each key. */
function lastBy<T>(items: T[], key: (t: T) => string): T[] {
  const last = new Map<string, number>();
  items.forEach((t, i) => last.set(key(t), i));
  return items.filter((t, i) => last.get(key(t)) === i);
}

/** A CDI mount as an OCI mount: no type (or "bind") is a bind mount, recursive unless the options say "bind". */
function ociMount(m: CdiMount): OciMount {
  const options = [...(m.options ?? [])];
  const type = m.type || "bind";
  if (type === "bind" && !options.includes("bind") && !options.includes("rbind")) options.unshift("rbind");
  return { destination: m.containerPath, type, source: m.hostPath, options };
}

// ---- the registry ---------------------------------------------------------------------

interface LoadedFile {
  /** mtime, size and inode: a file rewritten in place or replaced is read again. */
  sig: string;
  spec?: CdiSpec;
  /** Why the file was skipped, when it was. */
  reason?: string;
}

interface DirState {
  sig: string;
  files: Map<string, LoadedFile>;
}

/** Where a device is defined: later spec dirs override earlier ones, as the CDI spec says. */
interface DeviceEntry {
  file: string;
  spec: CdiSpec;
  edits: CdiContainerEdits;
  /** Another file of the same dir defines it too: it cannot be used until one goes. */
  conflict?: string;
}

export class CdiRegistry {
  private readonly dirState = new Map<string, DirState>();
  private devices = new Map<string, DeviceEntry>();
  /** Spec files that could not be used, with the reason: named when a device is not found. */
  private skipped: string[] = [];
  private refreshing: Promise<void> | undefined;

  constructor(readonly dirs: readonly string[], private readonly log: Logger) {}

  /** Resolves the requested fully-qualified names into edits: spec-wide edits once per spec, then each device's. */
  async resolve(names: string[]): Promise<ResolvedCdiEdits> {
    for (const n of names) parseQualifiedName(n);
    await this.refresh();
    const picked: DeviceEntry[] = [];
    const unknown: string[] = [];
    for (const n of names) {
      const e = this.devices.get(n);
      if (!e) unknown.push(n);
      else if (e.conflict) throw new InvalidArgument(`CDI device "${n}" is defined in both ${e.file} and ${e.conflict}: remove one`);
      else picked.push(e);
    }
    if (unknown.length > 0) {
      const skipped = this.skipped.length > 0 ? `; spec files skipped: ${this.skipped.slice(0, 3).join("; ")}${this.skipped.length > 3 ? ` and ${this.skipped.length - 3} more (see the log)` : ""}` : "";
      throw new InvalidArgument(`CDI device${unknown.length > 1 ? "s" : ""} ${unknown.map((n) => `"${n}"`).join(", ")} not found in the CDI spec dirs ${this.dirs.join(", ")}: install the vendor's spec file or fix the name${skipped}`);
    }
    const all: CdiContainerEdits[] = [];
    const specsSeen = new Set<CdiSpec>();
    for (const e of picked) {
      if (!specsSeen.has(e.spec)) {
        specsSeen.add(e.spec);
        all.push(e.spec.containerEdits);
      }
      all.push(e.edits);
    }
    return resolveOnHost(all, names);
  }

  /** Re-reads what changed under the spec dirs: one stat per dir and one per file when nothing did. */
  private async refresh(): Promise<void> {
    while (this.refreshing) await this.refreshing;
    this.refreshing = this.refreshOnce().finally(() => (this.refreshing = undefined));
    await this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    let changed = false;
    for (const dir of this.dirs) if (await this.refreshDir(dir)) changed = true;
    if (changed) this.rebuild();
  }

  private async refreshDir(dir: string): Promise<boolean> {
    const st = await stat(dir).catch((err) => {
      if (!isErrno(err, "ENOENT") && !isErrno(err, "ENOTDIR")) this.log.warn({ dir, err: (err as Error).message }, "CDI spec dir unreadable: skipped");
      return undefined;
    });
    const prev = this.dirState.get(dir);
    if (!st) {
      if (!prev) return false;
      this.dirState.delete(dir);
      return true;
    }
    const dirSig = `${st.mtimeMs}:${st.ino}`;
    let names: string[];
    if (prev && prev.sig === dirSig) names = [...prev.files.keys()];
    else names = (await readdir(dir).catch((err) => {
      this.log.warn({ dir, err: (err as Error).message }, "CDI spec dir unreadable: skipped");
      return [] as string[];
    })).filter((n) => n.endsWith(".json") || n.endsWith(".yaml") || n.endsWith(".yml")).sort();
    const files = new Map<string, LoadedFile>();
    let changed = !prev || prev.files.size !== names.length;
    for (const name of names) {
      const file = path.join(dir, name);
      const fst = await stat(file).catch(() => undefined);
      if (!fst || !fst.isFile()) {
        changed ||= prev?.files.has(name) ?? false;
        continue;
      }
      const sig = `${fst.mtimeMs}:${fst.size}:${fst.ino}`;
      const old = prev?.files.get(name);
      if (old && old.sig === sig) {
        files.set(name, old);
        continue;
      }
      changed = true;
      files.set(name, { sig, ...(await this.load(file, fst.size)) });
    }
    this.dirState.set(dir, { sig: dirSig, files });
    return changed;
  }

  private async load(file: string, size: number): Promise<{ spec?: CdiSpec; reason?: string }> {
    try {
      if (size > MAX_SPEC_BYTES) throw new SpecError(`${size} bytes is more than a CDI spec file may hold (${MAX_SPEC_BYTES})`);
      const text = await readFile(file, "utf8");
      const spec = parseCdiSpec(text, file.endsWith(".json") ? "json" : "yaml");
      this.log.info({ file, kind: spec.kind, devices: spec.devices.size }, "CDI spec loaded");
      return { spec };
    } catch (err) {
      const reason = (err as Error).message;
      this.log.warn({ file, reason }, "CDI spec file skipped");
      return { reason };
    }
  }

  private rebuild(): void {
    const devices = new Map<string, DeviceEntry>();
    const skipped: string[] = [];
    for (const dir of this.dirs) {
      const state = this.dirState.get(dir);
      if (!state) continue;
      const here = new Map<string, DeviceEntry>();
      for (const [name, f] of state.files) {
        const file = path.join(dir, name);
        if (!f.spec) {
          skipped.push(`${file}: ${f.reason ?? "unreadable"}`);
          continue;
        }
        for (const [dev, edits] of f.spec.devices) {
          const qn = `${f.spec.kind}=${dev}`;
          const same = here.get(qn);
          if (same) same.conflict ??= file;
          else here.set(qn, { file, spec: f.spec, edits });
        }
      }
      for (const [qn, e] of here) devices.set(qn, e);
    }
    this.devices = devices;
    this.skipped = skipped;
  }
}

/** Fills device nodes from the host (type, numbers, mode when the spec leaves them out) and checks mount sources. */
async function resolveOnHost(all: CdiContainerEdits[], names: string[]): Promise<ResolvedCdiEdits> {
  const out: ResolvedCdiEdits = { env: [], deviceNodes: [], mounts: [], hooks: [], additionalGids: [] };
  const what = names.join(", ");
  for (const e of all) {
    out.env.push(...(e.env ?? []));
    out.hooks.push(...(e.hooks ?? []));
    out.additionalGids.push(...(e.additionalGids ?? []));
    for (const m of e.mounts ?? []) {
      await stat(m.hostPath).catch((err) => {
        throw new FailedPrecondition(`CDI device ${what}: mount source ${m.hostPath} for ${m.containerPath} is not there: ${(err as Error).message}`);
      });
      out.mounts.push(m);
    }
    for (const d of e.deviceNodes ?? []) {
      const hostPath = d.hostPath ?? d.path;
      const permissions = d.permissions ?? "rwm";
      let type = d.type;
      let { major, minor, fileMode } = d;
      if (type !== "p" && (type === undefined || major === undefined || minor === undefined || fileMode === undefined)) {
        const host = await deviceAt(hostPath, d.path, permissions).catch((err) => {
          throw new FailedPrecondition(`CDI device ${what}: device node ${hostPath} is not there: ${(err as Error).message}`);
        });
        if (!host) throw new FailedPrecondition(`CDI device ${what}: ${hostPath} is not a character or block device`);
        type ??= host.type;
        major ??= host.major;
        minor ??= host.minor;
        fileMode ??= host.fileMode;
      }
      if (type !== "p" && (major === undefined || minor === undefined)) throw new FailedPrecondition(`CDI device ${what}: device node ${d.path} has no major/minor`);
      const node: OciDevice & { permissions: string } = { path: d.path, type: type!, major: major ?? 0, minor: minor ?? 0, permissions };
      if (fileMode !== undefined) node.fileMode = fileMode;
      if (d.uid !== undefined) node.uid = d.uid;
      if (d.gid !== undefined) node.gid = d.gid;
      out.deviceNodes.push(node);
    }
  }
  return out;
}
