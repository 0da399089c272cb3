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
    max_concurrent_downloads: number;
  };
  stream: {
    address: string;
    port: number;
    idle_timeout: string;
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
      max_concurrent_downloads: 3,
    },
    stream: {
      address: "127.0.0.1",
      port: 0,
      idle_timeout: "4h",
      tls_cert: "",
      tls_key: "",
    },
  };
}

type Leaf = "string" | "number" | "boolean" | "string[]" | "duration" | { oneOf: string[] };
interface Table { [key: string]: Leaf | Table | { mapOf: Leaf | Table } }

const HANDLER: Table = { path: "string", root: "string" };

const SCHEMA: Table = {
  root: "string",
  state: "string",
  socket: "string",
  log_level: { oneOf: ["trace", "debug", "info", "warn", "error", "fatal"] },
  cgroup_driver: { oneOf: ["cgroupfs", "systemd"] },
  runtime: {
    default_handler: "string",
    handlers: { mapOf: HANDLER },
    conmon: "string",
    drop_infra: "boolean",
    restrict_oom_score_adj: "boolean",
    default_stop_timeout: "number",
    call_timeout: "duration",
  },
  cni: { conf_dir: "string", bin_dirs: "string[]", plugin_timeout: "duration" },
  image: {
    pause_image: "string",
    insecure_registries: "string[]",
    mirrors: { mapOf: "string[]" },
    ca_files: "string[]",
    pull_progress_timeout: "duration",
    max_concurrent_downloads: "number",
  },
  stream: { address: "string", port: "number", idle_timeout: "duration", tls_cert: "string", tls_key: "string" },
};

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
      if (typeof value !== "string") throw bad("a duration string such as \"30s\"");
      try { parseDuration(value); } catch (e) { throw bad(`a duration: ${(e as Error).message}`); }
      return;
  }
}

/** Checks `data` against `schema` and merges it into `target`, naming the file and key of any error. */
function mergeChecked(target: Record<string, unknown>, data: Record<string, unknown>, schema: Table, file: string, prefix: string): void {
  for (const [k, v] of Object.entries(data)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const spec = schema[k];
    if (spec === undefined) throw new ConfigError(`${file}: unknown key "${key}"`);
    if (typeof spec === "string" || "oneOf" in spec) {
      checkLeaf(spec as Leaf, v, key, file);
      target[k] = v;
    } else if ("mapOf" in spec) {
      if (!isTable(v)) throw new ConfigError(`${file}: key "${key}" must be a table`);
      const map = (target[k] ??= {}) as Record<string, unknown>;
      const inner = spec.mapOf as Leaf | Table;
      for (const [name, entry] of Object.entries(v)) {
        if (typeof inner === "string" || "oneOf" in inner) {
          checkLeaf(inner as Leaf, entry, `${key}.${name}`, file);
          map[name] = entry;
        } else {
          if (!isTable(entry)) throw new ConfigError(`${file}: key "${key}.${name}" must be a table`);
          const merged = (map[name] ??= {}) as Record<string, unknown>;
          mergeChecked(merged, entry, inner as Table, file, `${key}.${name}`);
        }
      }
    } else {
      if (!isTable(v)) throw new ConfigError(`${file}: key "${key}" must be a table`);
      mergeChecked(target[k] as Record<string, unknown>, v, spec as Table, file, key);
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
  if ((c.stream.tls_cert === "") !== (c.stream.tls_key === "")) {
    throw new ConfigError(`stream.tls_cert and stream.tls_key must be set together`);
  }
}

/** The runtime root a handler's OCI runtime keeps its state in. */
export function handlerRoot(c: Config, handler: string): string {
  const h = c.runtime.handlers[handler];
  return h?.root || path.join(c.state, "runtime", handler);
}

export function configToToml(c: Config): string {
  return stringify(c as unknown as Record<string, unknown>);
}
