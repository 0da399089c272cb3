// berth's configuration: embedded defaults, then /etc/berth/berth.toml (or --config),
// then drop-ins from the berth.d folder beside it in name order, then command-line flags.
// Every key is declared in SCHEMA; an unknown key or a wrong type stops startup with the
// key and the file named.
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { parse, stringify } from "smol-toml";
import { isErrno } from "./errors.js";

export interface HandlerConfig {
  /** The OCI runtime binary (name on PATH or absolute path). */
  path: string;
  /** The runtime's --root for its state; default: <state>/runtime/<handler>. */
  root: string;
}

export interface Config {
  root: string;
  state: string;
  socket: string;
  log_level: string;
  log_file: string;
  log_file_max_size: string;
  log_file_max_files: number;
  /** Calls berthd makes to itself right after start (src/grpc/warmup.ts); 0: none. */
  warmup_calls: number;
  cgroup_driver: "cgroupfs" | "systemd";
  runtime: {
    default_handler: string;
    handlers: Record<string, HandlerConfig>;
    conmon: string;
    drop_infra: boolean;
    /** Never ask the kernel for an oom_score_adj below berthd's own (no CAP_SYS_RESOURCE). */
    restrict_oom_score_adj: boolean;
    default_stop_timeout: number;
    /** How long one OCI runtime call (create through conmon, start, kill, delete, state, update) may take before it is killed: DEADLINE_EXCEEDED. */
    call_timeout: string;
  };
  cni: {
    conf_dir: string;
    bin_dirs: string[];
    plugin_timeout: string;
  };
  image: {
    pause_image: string;
    insecure_registries: string[];
    mirrors: Record<string, string[]>;
    /** Extra PEM CA bundles trusted for https registries, mirrors and token servers (private CAs). */
    ca_files: string[];
    pull_progress_timeout: string;
    /** How often a running pull logs its bytes per layer (and updates the progress gauges). */
    pull_progress_interval: string;
    max_concurrent_downloads: number;
  };
  cdi: {
    /** CDI spec dirs, lowest priority first: a device a later dir defines wins. */
    spec_dirs: string[];
  };
  stream: {
    address: string;
    port: number;
    idle_timeout: string;
    tls_cert: string;
    tls_key: string;
  };
  metrics: {
    /** host:port of the Prometheus /metrics endpoint; empty turns it off. */
    address: string;
    tls_cert: string;
    tls_key: string;
  };
}

export const DEFAULT_CONFIG_FILE = "/etc/berth/berth.toml";

export function defaultConfig(): Config {
  return {
    root: "/var/lib/berth",
    state: "/run/berth",
    socket: "/run/berth/berth.sock",
    log_level: "info",
    log_file: "",
    log_file_max_size: "10MiB",
    log_file_max_files: 5,
    warmup_calls: 3000,
    cgroup_driver: "cgroupfs",
    runtime: {
      default_handler: "runc",
      handlers: { runc: { path: "runc", root: "" } },
      conmon: "conmon",
      drop_infra: true,
      restrict_oom_score_adj: true,
      default_stop_timeout: 10,
      call_timeout: "60s",
    },
    cni: {
      conf_dir: "/etc/cni/net.d",
      bin_dirs: ["/opt/cni/bin", "/usr/lib/cni"],
      plugin_timeout: "60s",
    },
    image: {
      pause_image: "registry.k8s.io/pause:3.10",
      insecure_registries: [],
      mirrors: {},
      ca_files: [],
      pull_progress_timeout: "5m",
      pull_progress_interval: "10s",
      max_concurrent_downloads: 3,
    },
    cdi: {
      spec_dirs: ["/etc/cdi", "/var/run/cdi"],
    },
    stream: {
      address: "127.0.0.1",
      port: 0,
      idle_timeout: "4h",
      tls_cert: "",
      tls_key: "",
    },
    metrics: {
      address: "127.0.0.1:9120",
      tls_cert: "",
      tls_key: "",
    },
  };
}

export type Leaf = "string" | "number" | "boolean" | "string[]" | "duration" | "size" | { oneOf: string[] };
/** One key: its type and the line docs/config.md and `berthd config --default` print for it. */
export interface Key { kind: "key"; leaf: Leaf; doc: string }
/** A table of named entries, all of one shape (`[runtime.handlers.<name>]`, `[image.mirrors]`). */
export interface MapOf { kind: "map"; of: Key | Table; doc: string; entryName: string; example?: string }
export interface Table { kind: "table"; doc: string; entries: Record<string, Entry> }
export type Entry = Key | MapOf | Table;

const key = (leaf: Leaf, doc: string): Key => ({ kind: "key", leaf, doc });
const mapOf = (entryName: string, of: Key | Table, doc: string, example?: string): MapOf => ({ kind: "map", of, doc, entryName, example });
const table = (doc: string, entries: Record<string, Entry>): Table => ({ kind: "table", doc, entries });

const HANDLER = table("One RuntimeClass handler: the OCI runtime a pod naming it runs under.", {
  path: key("string", "The OCI runtime binary (a name on PATH or an absolute path)."),
  root: key("string", "The runtime's --root for its state; empty: <state>/runtime/<handler>."),
});

// The one description of every key: loading checks files against it, docs/config.md and
// `berthd config --default` are generated from it (with the values of defaultConfig()).
export const SCHEMA: Table = table("", {
  root: key("string", "Persistent data: images, pod and container metadata (an absolute path)."),
  state: key("string", "Volatile state: sockets, runtime state, pid files (an absolute path, usually on tmpfs)."),
  socket: key("string", "The CRI unix socket (mode 0660); <socket>.lock keeps a second berthd out."),
  log_level: key({ oneOf: ["trace", "debug", "info", "warn", "error", "fatal"] }, "The least severe level berthd logs."),
  log_file: key("string", "Where berthd's own log goes; empty: stderr (the journal under systemd)."),
  log_file_max_size: key("size", "With log_file: the size at which the file is rotated to <log_file>.1."),
  log_file_max_files: key("number", "With log_file: how many rotated files (<log_file>.1 ... .N) are kept."),
  warmup_calls: key("number", "Read-only calls (Version, Status, the lists kubelet polls) berthd sends itself right after start, one at a time, through its own socket and gRPC stack, so Node has compiled that path before kubelet's polls come (3000 took about 0.6 s of CPU at start on a 2-core machine); not logged or counted in the metrics. 0: none."),
  cgroup_driver: key({ oneOf: ["cgroupfs", "systemd"] }, "How container cgroups are named and created (kubelet's --cgroup-driver must match)."),
  runtime: table("Pods and containers: OCI runtimes, the monitor, defaults.", {
    default_handler: key("string", "The RuntimeClass handler used when a pod names none."),
    handlers: mapOf("handler", HANDLER, "One table per RuntimeClass handler."),
    conmon: key("string", "The per-container monitor binary (a name on PATH or an absolute path)."),
    drop_infra: key("boolean", "No pause container unless the pod shares a PID namespace."),
    restrict_oom_score_adj: key("boolean", "Never ask for an oom_score_adj below berthd's own (hosts without CAP_SYS_RESOURCE)."),
    default_stop_timeout: key("number", "Seconds StopContainer waits when the request gives no timeout."),
    call_timeout: key("duration", "How long one OCI runtime call (create through conmon, start, kill, delete, state, update) may take before it and what it started are killed and the RPC fails with DEADLINE_EXCEEDED."),
  }),
  cni: table("Pod networking through CNI plugins.", {
    conf_dir: key("string", "Where the network config (*.conf, *.conflist, *.json) is read from; the first by name is used."),
    bin_dirs: key("string[]", "Where plugin binaries are looked for, in order."),
    plugin_timeout: key("duration", "How long one plugin call may take before it is killed."),
  }),
  image: table("Pulling and storing images.", {
    pause_image: key("string", "The infra image of pods that share a PID namespace (kept from image removal)."),
    insecure_registries: key("string[]", "Hosts reached over plain http (localhost and 127.0.0.1 always are)."),
    mirrors: mapOf("registry host", key("string[]", ""), "Per registry host, mirror base URLs tried in order before the host itself.", `"registry.k8s.io" = ["http://127.0.0.1:5000"]`),
    ca_files: key("string[]", "Extra PEM CA bundles trusted (with the system's) for https registries, mirrors and token servers."),
    pull_progress_timeout: key("duration", "A pull that receives no bytes for this long is aborted."),
    pull_progress_interval: key("duration", "How often a running pull logs its bytes per layer and sets the progress gauges (at least 10ms)."),
    max_concurrent_downloads: key("number", "Layer downloads running at once across all pulls."),
  }),
  cdi: table("Container Device Interface: devices named by CDI_devices or cdi.k8s.io/* annotations.", {
    spec_dirs: key("string[]", "Folders of CDI spec files (JSON or YAML), later ones overriding earlier ones; re-read when they change."),
  }),
  stream: table("The streaming server behind Exec, Attach and PortForward URLs.", {
    address: key("string", "The address it listens on."),
    port: key("number", "Its port; 0: a free port."),
    idle_timeout: key("duration", "A streaming connection with no traffic this long is closed (its process killed)."),
    tls_cert: key("string", "With tls_key: the server speaks TLS with this PEM certificate."),
    tls_key: key("string", "With tls_cert: the PEM private key."),
  }),
  metrics: table("berthd's Prometheus endpoint (docs/metrics.md).", {
    address: key("string", "host:port serving GET /metrics; empty turns it off (a taken port is logged, the CRI still served)."),
    tls_cert: key("string", "With tls_key: the endpoint speaks https with this PEM certificate."),
    tls_key: key("string", "With tls_cert: the PEM private key."),
  }),
});

/**
 * The keys a running berthd takes on SIGHUP; every other changed key is logged as needing a
 * restart. A key added here must also be applied in the daemon's reload (src/daemon.ts).
 */
export const LIVE_KEYS = [
  "log_level",
  "image.mirrors",
  "image.insecure_registries",
  "image.ca_files",
  "image.pull_progress_timeout",
] as const;
export type LiveKey = (typeof LIVE_KEYS)[number];

export class ConfigError extends Error {}

const DURATION = /^(\d+(?:\.\d+)?(?:ms|s|m|h))+$/;

/** Parses "1h30m", "90s", "250ms" into milliseconds. */
export function parseDuration(text: string): number {
  if (!DURATION.test(text)) throw new ConfigError(`"${text}" is not a duration (examples: 250ms, 30s, 5m, 4h)`);
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    const n = Number(m[1]);
    total += m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : m[2] === "m" ? n * 60_000 : n * 3_600_000;
  }
  return total;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

const SIZE = /^(\d+)(B|KiB|MiB|GiB)?$/;
const SIZE_UNIT: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

/** Parses "10MiB", "512KiB", "1GiB" or a plain byte count into bytes. */
export function parseSize(text: string): number {
  const m = SIZE.exec(text);
  if (!m) throw new ConfigError(`"${text}" is not a size (examples: 4096, 512KiB, 10MiB, 1GiB)`);
  return Number(m[1]) * SIZE_UNIT[m[2] ?? "B"]!;
}

function checkLeaf(leaf: Leaf, value: unknown, key: string, file: string): void {
  const bad = (want: string) => new ConfigError(`${file}: key "${key}" must be ${want}, got ${JSON.stringify(value)}`);
  if (typeof leaf === "object") {
    if (typeof value !== "string" || !leaf.oneOf.includes(value)) throw bad(`one of ${leaf.oneOf.join(", ")}`);
    return;
  }
  switch (leaf) {
    case "string": if (typeof value !== "string") throw bad("a string"); return;
    case "number": if (typeof value !== "number" || !Number.isFinite(value)) throw bad("a number"); return;
    case "boolean": if (typeof value !== "boolean") throw bad("true or false"); return;
    case "string[]":
      if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) throw bad("an array of strings");
      return;
    case "duration":
    case "size": {
      const parseIt = leaf === "duration" ? parseDuration : parseSize;
      if (typeof value !== "string") throw bad(leaf === "duration" ? "a duration string such as \"30s\"" : "a size string such as \"10MiB\"");
      try { parseIt(value); } catch (e) { throw bad(`a ${leaf}: ${(e as Error).message}`); }
      return;
    }
  }
}

/** Checks `data` against `schema` and merges it into `target`, naming the file and key of any error. */
function mergeChecked(target: Record<string, unknown>, data: Record<string, unknown>, schema: Table, file: string, prefix: string): void {
  for (const [k, v] of Object.entries(data)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const spec = schema.entries[k];
    if (spec === undefined) throw new ConfigError(`${file}: unknown key "${key}"`);
    if (spec.kind === "key") {
      checkLeaf(spec.leaf, v, key, file);
      target[k] = v;
    } else if (spec.kind === "map") {
      if (!isTable(v)) throw new ConfigError(`${file}: key "${key}" must be a table`);
      const map = (target[k] ??= {}) as Record<string, unknown>;
      for (const [name, entry] of Object.entries(v)) {
        if (spec.of.kind === "key") {
          checkLeaf(spec.of.leaf, entry, `${key}.${name}`, file);
          map[name] = entry;
        } else {
          if (!isTable(entry)) throw new ConfigError(`${file}: key "${key}.${name}" must be a table`);
          const merged = (map[name] ??= {}) as Record<string, unknown>;
          mergeChecked(merged, entry, spec.of, file, `${key}.${name}`);
        }
      }
    } else {
      if (!isTable(v)) throw new ConfigError(`${file}: key "${key}" must be a table`);
      mergeChecked(target[k] as Record<string, unknown>, v, spec, file, key);
    }
  }
}

async function readToml(file: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${file}: invalid TOML: ${(err as Error).message}`);
  }
}

export interface ConfigFlags {
  config?: string;
  root?: string;
  state?: string;
  socket?: string;
  logLevel?: string;
  cniConfDir?: string;
}

/** Loads the effective config: defaults, main file, drop-ins (berth.d beside it), flags. */
export async function loadConfig(flags: ConfigFlags = {}): Promise<{ config: Config; files: string[] }> {
  const config = defaultConfig() as unknown as Record<string, unknown>;
  const mainFile = flags.config ?? DEFAULT_CONFIG_FILE;
  const files: string[] = [];
  const main = await readToml(mainFile);
  if (main === undefined && flags.config !== undefined) throw new ConfigError(`${mainFile}: no such config file`);
  if (main !== undefined) {
    mergeChecked(config, main, SCHEMA, mainFile, "");
    files.push(mainFile);
  }
  const dropDir = path.join(path.dirname(mainFile), "berth.d");
  let names: string[] = [];
  try {
    names = (await readdir(dropDir)).filter((n) => n.endsWith(".toml")).sort();
  } catch (err) {
    if (!isErrno(err, "ENOENT") && !isErrno(err, "ENOTDIR")) throw new ConfigError(`${dropDir}: cannot list: ${(err as Error).message}`);
  }
  for (const name of names) {
    const file = path.join(dropDir, name);
    const data = await readToml(file);
    if (data === undefined) continue;
    mergeChecked(config, data, SCHEMA, file, "");
    files.push(file);
  }
  const fromFlags: Record<string, unknown> = {};
  if (flags.root !== undefined) fromFlags.root = flags.root;
  if (flags.state !== undefined) fromFlags.state = flags.state;
  if (flags.socket !== undefined) fromFlags.socket = flags.socket;
  if (flags.logLevel !== undefined) fromFlags.log_level = flags.logLevel;
  if (flags.cniConfDir !== undefined) fromFlags.cni = { conf_dir: flags.cniConfDir };
  mergeChecked(config, fromFlags, SCHEMA, "command line", "");
  const result = config as unknown as Config;
  validate(result);
  return { config: result, files };
}

function validate(c: Config): void {
  for (const key of ["root", "state", "socket"] as const) {
    if (!path.isAbsolute(c[key])) throw new ConfigError(`key "${key}" must be an absolute path, got "${c[key]}"`);
  }
  if (!c.runtime.handlers[c.runtime.default_handler]) {
    throw new ConfigError(`runtime.default_handler "${c.runtime.default_handler}" has no [runtime.handlers.${c.runtime.default_handler}] table`);
  }
  for (const [name, h] of Object.entries(c.runtime.handlers)) {
    if (!h.path) throw new ConfigError(`runtime.handlers.${name}.path must be set`);
    h.root ??= "";
  }
  if (!Number.isInteger(c.stream.port) || c.stream.port < 0 || c.stream.port > 65535) {
    throw new ConfigError(`stream.port must be an integer from 0 to 65535, got ${c.stream.port}`);
  }
  if (!Number.isInteger(c.image.max_concurrent_downloads) || c.image.max_concurrent_downloads < 1) {
    throw new ConfigError(`image.max_concurrent_downloads must be a positive integer`);
  }
  if (!Number.isInteger(c.log_file_max_files) || c.log_file_max_files < 0) {
    throw new ConfigError(`log_file_max_files must be a whole number (0 or more), got ${c.log_file_max_files}`);
  }
  if (!Number.isInteger(c.warmup_calls) || c.warmup_calls < 0 || c.warmup_calls > 1_000_000) {
    throw new ConfigError(`warmup_calls must be a whole number from 0 to 1000000, got ${c.warmup_calls}`);
  }
  if (c.log_file !== "" && !path.isAbsolute(c.log_file)) throw new ConfigError(`key "log_file" must be an absolute path, got "${c.log_file}"`);
  if ((c.stream.tls_cert === "") !== (c.stream.tls_key === "")) {
    throw new ConfigError(`stream.tls_cert and stream.tls_key must be set together`);
  }
  if ((c.metrics.tls_cert === "") !== (c.metrics.tls_key === "")) {
    throw new ConfigError(`metrics.tls_cert and metrics.tls_key must be set together`);
  }
  if (c.metrics.address !== "") parseHostPort(c.metrics.address, "metrics.address");
  if (parseDuration(c.image.pull_progress_interval) < 10) throw new ConfigError(`image.pull_progress_interval must be at least 10ms`);
}

/** "127.0.0.1:9120" or "[::1]:9120" -> host and port; a ConfigError naming `key` otherwise. */
export function parseHostPort(text: string, key: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${key} must be host:port (e.g. "127.0.0.1:9120", "[::1]:9120"), got "${text}"`);
  return { host: m[1] ?? m[2] ?? "", port };
}

/** The runtime root a handler's OCI runtime keeps its state in. */
export function configToToml(c: Config): string {
  return stringify(c as unknown as Record<string, unknown>);
}

/** Every key's value by dotted path (a map such as image.mirrors counts as one key), in schema order. */
export function keyValues(c: Config): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (t: Table, value: Record<string, unknown>, prefix: string) => {
    for (const [k, e] of Object.entries(t.entries)) {
      const p = prefix ? `${prefix}.${k}` : k;
      if (e.kind === "table") walk(e, (value[k] ?? {}) as Record<string, unknown>, p);
      else out.set(p, value[k]);
    }
  };
  walk(SCHEMA, c as unknown as Record<string, unknown>, "");
  return out;
}

/** The keys whose values differ between two configs, split into those LIVE_KEYS can apply and the rest. */
export function changedKeys(before: Config, after: Config): { live: LiveKey[]; restart: string[] } {
  const a = keyValues(before);
  const b = keyValues(after);
  const live: LiveKey[] = [];
  const restart: string[] = [];
  for (const [k, v] of b) {
    if (JSON.stringify(v) === JSON.stringify(a.get(k))) continue;
    if ((LIVE_KEYS as readonly string[]).includes(k)) live.push(k as LiveKey);
    else restart.push(k);
  }
  return { live, restart };
}
