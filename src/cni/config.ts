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
