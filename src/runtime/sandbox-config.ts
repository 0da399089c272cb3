// Pure decisions about a pod from its PodSandboxConfig: its reserved name, hostname,
// resolv.conf and hosts files, which sysctls it may set and where, its cgroup parent and
// the port mappings its network gets. Bad input becomes an InvalidArgument naming the field.
import { isIP } from "node:net";
import path from "node:path";
import { NamespaceMode, Protocol, type DNSConfig, type PodSandboxConfig, type PodSandboxMetadata, type PortMapping } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import type { CapabilityArgs } from "../cni/config.js";

/** The name a pod is reserved under, as containerd spells it: name_namespace_uid_attempt. */
export function sandboxName(md: PodSandboxMetadata): string {
  return [md.name, md.namespace, md.uid, String(md.attempt)].join("_");
}

const CNI_ARG_UNSAFE = /[;=\s\x00-\x1f\x7f]/;

export function validateMetadata(md: PodSandboxMetadata | undefined): PodSandboxMetadata {
  if (!md) throw new InvalidArgument("config.metadata is required (name, namespace, uid, attempt)");
  if (md.name === "") throw new InvalidArgument("config.metadata.name must not be empty");
  if (md.namespace === "") throw new InvalidArgument("config.metadata.namespace must not be empty");
  for (const [field, v] of [["name", md.name], ["namespace", md.namespace], ["uid", md.uid]] as const) {
    if (CNI_ARG_UNSAFE.test(v) || v.length > 253) throw new InvalidArgument(`config.metadata.${field} ${JSON.stringify(v.slice(0, 300))} must be at most 253 characters without whitespace, control characters, ";" or "="`);
  }
  return md;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;

/** The pod's hostname: the requested one, or the pod name (host network: the node's). */
export function podHostname(requested: string, podName: string, hostNetwork: boolean, nodeHostname: string): string {
  if (requested !== "") {
    if (requested.length > 64 || !HOSTNAME.test(requested)) {
      throw new InvalidArgument(`config.hostname "${requested}" is not a valid hostname (letters, digits, "-" and ".", at most 64 characters)`);
    }
    return requested;
  }
  if (hostNetwork) return nodeHostname;
  const fromName = podName.toLowerCase().replace(/[^a-z0-9.-]/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 63).replace(/[^a-z0-9]+$/, "");
  return fromName || "pod";
}

const DNS_WORD = /^[^\s#;]+$/;

/** /etc/resolv.conf for the pod: from DNSConfig when it says anything, else the host's. */
export function resolvConf(dns: DNSConfig | undefined, hostResolvConf: string): string {
  if (!dns || (dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0)) return hostResolvConf;
  const check = (field: string, values: string[]) => {
    for (const v of values) if (!DNS_WORD.test(v)) throw new InvalidArgument(`config.dns_config.${field} entry "${v}" must be one word without spaces, "#" or ";"`);
  };
  check("servers", dns.servers);
  check("searches", dns.searches);
  check("options", dns.options);
  let text = "";
  if (dns.searches.length) text += `search ${dns.searches.join(" ")}\n`;
  for (const s of dns.servers) text += `nameserver ${s}\n`;
  if (dns.options.length) text += `options ${dns.options.join(" ")}\n`;
  return text;
}

/** /etc/hosts for a pod with its own network: localhost, and the pod's addresses under its hostname. */
export function hostsFile(hostname: string, ips: string[]): string {
  let text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";
  for (const ip of ips) text += `${ip}\t${hostname}\n`;
  return text;
}

export interface PodSysctl {
  key: string;
  /** Path under /proc/sys. */
  procPath: string;
  /** The namespace the sysctl lives in. */
  kind: "net" | "ipc";
  value: string;
}

const IPC_SYSCTLS = ["kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmni", "kernel.msgmnb", "kernel.sem"];
const SYSCTL_PART = /^[A-Za-z0-9_-][A-Za-z0-9_.:-]*$/;

/** Checks the pod's sysctls: only namespaced ones, only for namespaces the pod owns, values on one line. */
export function podSysctls(sysctls: Record<string, string>, hostNetwork: boolean, hostIpc: boolean): PodSysctl[] {
  const out: PodSysctl[] = [];
  for (const [key, value] of Object.entries(sysctls)) {
    // "net/ipv4/conf/eth0.1/forwarding" (slashes) keeps dots inside a component; dotted form is split on dots.
    const parts = key.includes("/") ? key.split("/") : key.split(".");
    if (parts.some((p) => !SYSCTL_PART.test(p) || p === "." || p === "..")) throw new InvalidArgument(`sysctl "${key}" is not a valid sysctl name`);
    const dotted = parts.join(".");
    let kind: "net" | "ipc";
    if (dotted.startsWith("net.")) kind = "net";
    else if (IPC_SYSCTLS.includes(dotted) || dotted.startsWith("fs.mqueue.")) kind = "ipc";
    else throw new InvalidArgument(`sysctl "${key}" is not namespaced: a pod may set net.*, fs.mqueue.*, kernel.shm*, kernel.msg* and kernel.sem only`);
    if (kind === "net" && hostNetwork) throw new InvalidArgument(`sysctl "${key}" cannot be set in a pod that uses the host network`);
    if (kind === "ipc" && hostIpc) throw new InvalidArgument(`sysctl "${key}" cannot be set in a pod that uses the host IPC namespace`);
    if (value === "" || /[\n\r\0;]/.test(value) || value.length > 4096) {
      throw new InvalidArgument(`sysctl "${key}" value ${JSON.stringify(value)} must be non-empty, on one line, without ";"`);
    }
    out.push({ key, procPath: parts.join("/"), kind, value });
  }
  return out;
}

/** The absolute cgroup parent of the pod's containers; the default when none is asked for. */
export function cgroupParent(driver: "cgroupfs" | "systemd", requested: string): string {
  if (requested === "") return driver === "systemd" ? "system.slice" : "/berth";
  if (requested.includes("\0") || requested.split("/").includes("..")) throw new InvalidArgument(`linux.cgroup_parent "${requested}" must not contain ".."`);
  if (driver === "systemd") {
    const base = requested.replace(/^\/+/, "");
    if (!base.endsWith(".slice") || base.includes("/")) {
      throw new InvalidArgument(`linux.cgroup_parent "${requested}" must be a systemd slice such as "kubepods-besteffort.slice" with the systemd cgroup driver`);
    }
    return base;
  }
  if (!requested.startsWith("/")) throw new InvalidArgument(`linux.cgroup_parent "${requested}" must be an absolute cgroup path such as "/kubepods/besteffort" with the cgroupfs driver`);
  return requested.replace(/\/+$/, "") || "/";
}

const PROTOCOLS: Record<number, string> = { [Protocol.TCP]: "tcp", [Protocol.UDP]: "udp", [Protocol.SCTP]: "sctp" };

/** The portMappings capability: every mapping with a host port. */
export function portMappingsCapability(mappings: PortMapping[]): CapabilityArgs["portMappings"] {
  const out: NonNullable<CapabilityArgs["portMappings"]> = [];
  for (const m of mappings) {
    if (m.hostPort <= 0) continue;
    if (m.hostPort > 65535 || m.containerPort <= 0 || m.containerPort > 65535) {
      throw new InvalidArgument(`port mapping ${m.hostPort}->${m.containerPort}: ports must be 1-65535`);
    }
    const protocol = PROTOCOLS[m.protocol];
    if (!protocol) throw new InvalidArgument(`port mapping ${m.hostPort}->${m.containerPort}: unknown protocol ${m.protocol}`);
    out.push({ hostPort: m.hostPort, containerPort: m.containerPort, protocol, ...(m.hostIp ? { hostIP: m.hostIp } : {}) });
  }
  return out.length ? out : undefined;
}

/** True when every selector pair is among the labels. */
export function matchesLabels(labels: Record<string, string>, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

const CONTROL = /[\x00-\x1f\x7f]/;
const MAX_KEY = 317; // a 253-character prefix, "/", a 63-character name
const MAX_VALUE = 64 * 1024;
const MAX_TOTAL = 256 * 1024; // Kubernetes' limit for all annotations of an object

/** Labels and annotations (pods and containers): keys 1-317 characters without control characters, bounded values and total. */
export function checkStringMap(field: string, map: Record<string, string>): void {
  let total = 0;
  for (const [k, v] of Object.entries(map)) {
    if (k === "" || k.length > MAX_KEY || CONTROL.test(k)) {
      throw new InvalidArgument(`${field} key ${JSON.stringify(k.slice(0, 80))}${k.length > 80 ? "…" : ""} must be 1-${MAX_KEY} characters without control characters`);
    }
    if (v.length > MAX_VALUE || v.includes("\0")) throw new InvalidArgument(`${field}["${k}"] must be at most ${MAX_VALUE} bytes without NUL characters`);
    total += k.length + v.length;
  }
  if (total > MAX_TOTAL) throw new InvalidArgument(`${field} total ${total} bytes; at most ${MAX_TOTAL} are accepted`);
}

const MODES: Record<string, NamespaceMode[]> = {
  network: [NamespaceMode.POD, NamespaceMode.NODE],
  pid: [NamespaceMode.POD, NamespaceMode.CONTAINER, NamespaceMode.NODE],
  ipc: [NamespaceMode.POD, NamespaceMode.NODE],
};

/**
 * Checks the fields of a PodSandboxConfig that no other step looks at: log directory,
 * labels and annotations, namespace modes, DNS servers, port mapping host IPs.
 */
export function validatePodConfig(config: PodSandboxConfig): void {
  validateMetadata(config.metadata);
  const logDir = config.logDirectory;
  if (logDir !== "" && (!path.isAbsolute(logDir) || CONTROL.test(logDir) || logDir.split("/").includes("..") || logDir.length > 4096)) {
    throw new InvalidArgument(`config.log_directory "${logDir.slice(0, 300)}" must be an absolute path without ".." or control characters`);
  }
  checkStringMap("config.labels", config.labels);
  checkStringMap("config.annotations", config.annotations);
  const ns = config.linux?.securityContext?.namespaceOptions;
  if (ns) {
    for (const [field, allowed] of Object.entries(MODES)) {
      const mode = ns[field as "network" | "pid" | "ipc"];
      if (!allowed.includes(mode)) {
        throw new InvalidArgument(`config.linux.security_context.namespace_options.${field} = ${NamespaceMode[mode] ?? mode} is not valid for a pod; use ${allowed.map((m) => NamespaceMode[m]).join(", ")}`);
      }
    }
  }
  for (const s of config.dnsConfig?.servers ?? []) {
    if (isIP(s) === 0) throw new InvalidArgument(`config.dns_config.servers entry "${s.slice(0, 100)}" is not an IP address`);
  }
  for (const m of config.portMappings) {
    if (m.hostPort < 0 || m.containerPort < 0) throw new InvalidArgument(`port mapping ${m.hostPort}->${m.containerPort}: ports must not be negative`);
    if (m.hostIp !== "" && isIP(m.hostIp) === 0) throw new InvalidArgument(`port mapping ${m.hostPort}->${m.containerPort}: host_ip "${m.hostIp.slice(0, 100)}" is not an IP address`);
  }
}
