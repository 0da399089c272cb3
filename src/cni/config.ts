// Loading the pod network's CNI configuration: the first file in the conf dir, in lexical
// order, that parses as a .conflist, .conf or .json network config (as kubelet and
// containerd pick it). A single-plugin .conf is lifted into a one-plugin list.
import { access, constants, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { isErrno } from "../errors.js";

export interface PluginConf {
  type: string;
  [key: string]: unknown;
}

export interface NetworkConfList {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
  disableCheck?: boolean;
  /** The file it came from. */
  file: string;
  /** The raw bytes' parsed form, for passing keys through to plugins untouched. */
  raw: Record<string, unknown>;
}

const EXTENSIONS = [".conflist", ".conf", ".json"];

/** Parses one network config file's text; throws an Error naming what is wrong. */
export function parseNetworkConfig(file: string, text: string): NetworkConfList {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: invalid JSON: ${(err as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new Error(`${file}: not a JSON object`);
  const obj = data as Record<string, unknown>;
  if (typeof obj.name !== "string" || obj.name === "") throw new Error(`${file}: missing "name"`);
  const cniVersion = typeof obj.cniVersion === "string" ? obj.cniVersion : "0.2.0";
  let plugins: PluginConf[];
  if (file.endsWith(".conflist") || Array.isArray(obj.plugins)) {
    if (!Array.isArray(obj.plugins) || obj.plugins.length === 0) throw new Error(`${file}: "plugins" must be a non-empty list`);
    plugins = obj.plugins.map((p, i) => {
      if (typeof p !== "object" || p === null || typeof (p as PluginConf).type !== "string") throw new Error(`${file}: plugins[${i}] has no "type"`);
      return p as PluginConf;
    });
  } else {
    if (typeof obj.type !== "string") throw new Error(`${file}: missing "type"`);
    const { name: _n, cniVersion: _v, ...plugin } = obj;
    plugins = [plugin as PluginConf];
  }
  return { cniVersion, name: obj.name, plugins, disableCheck: obj.disableCheck === true, file, raw: obj };
}

/** The network config kubelet's pods get, or undefined when the dir holds none. Errors of skipped files are returned too. */
export async function loadNetworkConfig(confDir: string): Promise<{ config?: NetworkConfList; skipped: string[] }> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return { skipped: [] };
    throw err;
  }
  const skipped: string[] = [];
  for (const name of names.filter((n) => EXTENSIONS.includes(path.extname(n))).sort()) {
    const file = path.join(confDir, name);
    try {
      return { config: parseNetworkConfig(file, await readFile(file, "utf8")), skipped };
    } catch (err) {
      skipped.push((err as Error).message);
    }
  }
  return { skipped };
}

/** The absolute path of a plugin binary, searched in binDirs in order. */
export async function findPlugin(type: string, binDirs: string[]): Promise<string | undefined> {
  if (type.includes("/") || type === "." || type === "..") return undefined;
  for (const dir of binDirs) {
    const candidate = path.join(dir, type);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this dir
    }
  }
  return undefined;
}

/** The CNI spec versions berth can drive (the result formats it understands). */
export const SUPPORTED_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/** True when `version` is at least `min` (both "x.y.z"). */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split(".").map((n) => Number.parseInt(n, 10) || 0);
  const b = min.split(".").map((n) => Number.parseInt(n, 10) || 0);
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

/** The runtime's values for the well-known capabilities; a plugin gets only those it declares. */
export interface CapabilityArgs {
  portMappings?: Array<{ hostPort: number; containerPort: number; protocol: string; hostIP?: string }>;
  bandwidth?: { ingressRate?: number; ingressBurst?: number; egressRate?: number; egressBurst?: number };
  ipRanges?: Array<Array<{ subnet: string }>>;
  dns?: { servers?: string[]; searches?: string[]; options?: string[] };
}

/** The runtimeConfig a plugin receives: the capabilities it sets true, with values present. */
export function runtimeConfigFor(plugin: PluginConf, caps: CapabilityArgs): Record<string, unknown> | undefined {
  const declared = plugin.capabilities;
  if (typeof declared !== "object" || declared === null) return undefined;
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(caps)) {
    if ((declared as Record<string, unknown>)[name] === true && value !== undefined) out[name] = value;
  }
  return Object.keys(out).length ? out : undefined;
}

/**
 * The network config one plugin of a chain reads on stdin: its own keys plus the list's
 * name and cniVersion, the previous plugin's result, and its runtimeConfig.
 */
export function pluginInput(list: Pick<NetworkConfList, "name" | "cniVersion">, plugin: PluginConf, prevResult: unknown, caps: CapabilityArgs): Record<string, unknown> {
  const { capabilities: _c, ...rest } = plugin;
  const input: Record<string, unknown> = { ...rest, cniVersion: list.cniVersion, name: list.name };
  if (plugin.capabilities !== undefined) input.capabilities = plugin.capabilities;
  if (prevResult !== undefined) input.prevResult = prevResult;
  const rc = runtimeConfigFor(plugin, caps);
  if (rc) input.runtimeConfig = { ...((plugin.runtimeConfig as Record<string, unknown> | undefined) ?? {}), ...rc };
  return input;
}

/** CNI_ARGS: `K=V` pairs joined by `;`; refuses values that would break the format. */
export function formatCniArgs(pairs: Array<[string, string]>): string {
  return pairs
    .map(([k, v]) => {
      if (/[;=]/.test(k) || /[;=]/.test(v)) throw new Error(`CNI_ARGS value for ${k} must not contain ";" or "=": "${v}"`);
      return `${k}=${v}`;
    })
    .join(";");
}

/** The addresses (CIDR form) of a result, in the result's order; those on `ifName` first. */
export function resultAddresses(result: unknown, ifName = "eth0"): string[] {
  if (typeof result !== "object" || result === null) return [];
  const r = result as { ips?: Array<{ address?: string; interface?: number }>; interfaces?: Array<{ name?: string; sandbox?: string }>; ip4?: { ip?: string }; ip6?: { ip?: string } };
  if (Array.isArray(r.ips)) {
    const mine: string[] = [];
    const other: string[] = [];
    for (const ip of r.ips) {
      if (typeof ip?.address !== "string") continue;
      const iface = typeof ip.interface === "number" ? r.interfaces?.[ip.interface] : undefined;
      (iface === undefined || iface.name === ifName ? mine : other).push(ip.address);
    }
    return [...mine, ...other];
  }
  // spec 0.1.0/0.2.0 results
  return [r.ip4?.ip, r.ip6?.ip].filter((x): x is string => typeof x === "string");
}

/** The IP addresses (no prefix length) of a result; those on `ifName` first. */
export function resultIPs(result: unknown, ifName = "eth0"): string[] {
  return resultAddresses(result, ifName).map((cidr) => cidr.split("/")[0]!);
}

/** Primary first: the first IPv4 address when there is one (as kubelet's dual-stack order expects), then the rest. */
export function orderPodIPs(ips: string[]): string[] {
  const v4 = ips.findIndex((ip) => !ip.includes(":"));
  if (v4 <= 0) return [...new Set(ips)];
  return [...new Set([ips[v4]!, ...ips.slice(0, v4), ...ips.slice(v4 + 1)])];
}

const QUANTITY = /^(\d+(?:\.\d+)?)(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const FACTORS: Record<string, number> = {
  "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity such as "10M" or "1Gi" as a number; throws on anything else. */
export function parseQuantity(text: string): number {
  const m = QUANTITY.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a quantity (examples: 10M, 1Gi, 500k)`);
  return Math.round(Number(m[1]) * FACTORS[m[2] ?? ""]!);
}

/** The bandwidth capability from kubernetes.io/{ingress,egress}-bandwidth annotations (bits per second). */
export function bandwidthFromAnnotations(annotations: Record<string, string>): CapabilityArgs["bandwidth"] {
  const ingress = annotations["kubernetes.io/ingress-bandwidth"];
  const egress = annotations["kubernetes.io/egress-bandwidth"];
  if (ingress === undefined && egress === undefined) return undefined;
  const out: NonNullable<CapabilityArgs["bandwidth"]> = {};
  // The burst is left effectively unlimited, as kubelet's dockershim and containerd do.
  if (ingress !== undefined) {
    out.ingressRate = parseQuantity(ingress);
    out.ingressBurst = 2 ** 32 - 1;
  }
  if (egress !== undefined) {
    out.egressRate = parseQuantity(egress);
    out.egressBurst = 2 ** 32 - 1;
  }
  return out;
}
