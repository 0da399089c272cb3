// The pod network's config as the conf dir holds it now: loaded once, reloaded after the
// dir changes (fs.watch), so RunPodSandbox and NetworkReady follow the dir without
// re-reading it on every call.
import { watch, type FSWatcher } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { Logger } from "../log.js";
import { findPlugin, loadNetworkConfig, SUPPORTED_VERSIONS, type NetworkConfList } from "./config.js";

export interface NetworkCondition {
  ready: boolean;
  reason: string;
  message: string;
}

export interface LoadedNetwork {
  config?: NetworkConfList;
  skipped: string[];
  error?: string;
}

/** How long NetworkReady trusts that the plugins it found are still installed. */
const PLUGINS_FOUND_MS = 30_000;
/** One object while the network stays ready: Status reuses its encoded answer while its conditions are the same objects. */
const NETWORK_READY: NetworkCondition = Object.freeze({ ready: true, reason: "", message: "" });

export class CniConfWatcher {
  private loaded: Promise<LoadedNetwork> | undefined;
  /** The config whose plugins were all found, and when: Status reuses that for PLUGINS_FOUND_MS. */
  private pluginsFound: { config: NetworkConfList; at: number } | undefined;
  private watcher: FSWatcher | undefined;

  constructor(readonly confDir: string, readonly binDirs: string[], private readonly log: Logger) {}

  /** Creates the conf dir when missing and starts watching it. */
  async start(): Promise<void> {
    await mkdir(this.confDir, { recursive: true, mode: 0o755 });
    try {
      this.watcher = watch(this.confDir, { persistent: false }, () => {
        this.loaded = undefined;
      });
      this.watcher.on("error", (err) => {
        // Without a watch every call re-reads the dir: slower, never stale.
        this.log.warn({ dir: this.confDir, err: String(err) }, "CNI conf dir watch failed; re-reading on every use");
        this.watcher?.close();
        this.watcher = undefined;
        this.loaded = undefined;
      });
    } catch (err) {
      this.log.warn({ dir: this.confDir, err: String(err) }, "cannot watch CNI conf dir; re-reading on every use");
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** The first valid network config of the dir (cached until the dir changes). */
  current(): Promise<LoadedNetwork> {
    const load = async (): Promise<LoadedNetwork> => {
      try {
        return await loadNetworkConfig(this.confDir);
      } catch (err) {
        return { skipped: [], error: `cannot read CNI conf dir ${this.confDir}: ${(err as Error).message}` };
      }
    };
    if (!this.watcher) return load();
    const p = (this.loaded ??= load());
    return p;
  }

  /** NetworkReady: a config exists, its version is one berth drives and every plugin it names is installed. */
  async condition(): Promise<NetworkCondition> {
    const loaded = await this.current();
    const notReady = (message: string) => ({ ready: false, reason: "NetworkPluginNotReady", message });
    if (loaded.error) return notReady(loaded.error);
    if (!loaded.config) {
      const extra = loaded.skipped.length ? ` (skipped: ${loaded.skipped.join("; ")})` : "";
      return notReady(`no CNI network config found in ${this.confDir}${extra}`);
    }
    const c = loaded.config;
    if (!SUPPORTED_VERSIONS.includes(c.cniVersion)) {
      return notReady(`CNI network "${c.name}" (${c.file}) has cniVersion ${c.cniVersion}; berth supports ${SUPPORTED_VERSIONS.join(", ")}`);
    }
    // Found plugins are trusted for a while (kubelet asks every 5 s); missing ones are looked for on every call.
    if (this.pluginsFound?.config === c && Date.now() - this.pluginsFound.at < PLUGINS_FOUND_MS) return NETWORK_READY;
    const found = await Promise.all(c.plugins.map((p) => findPlugin(p.type, this.binDirs)));
    const missing = c.plugins.filter((_, i) => !found[i]).map((p) => p.type);
    this.pluginsFound = missing.length ? undefined : { config: c, at: Date.now() };
    if (missing.length) {
      return notReady(`CNI network "${c.name}" (${c.file}) needs plugins not found in ${this.binDirs.join(":")}: ${missing.join(", ")}`);
    }
    return NETWORK_READY;
  }
}
