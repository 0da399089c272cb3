// The node's readiness as the CRI Status RPC reports it: RuntimeReady when the default
// handler's OCI runtime binary runs, NetworkReady when a CNI config exists and every
// plugin it names is found. Results are cached briefly: kubelet asks every few seconds.
import type { Condition, NodeInfo } from "../cri/runtime-info.js";
import type { Config } from "../config.js";
import { findPlugin, loadNetworkConfig } from "../cni/config.js";
import { ociRuntimeVersion } from "./runc.js";
import { probeHandlerFeatures } from "./handler-features.js";

const CACHE_MS = 2000;

function cached(fn: () => Promise<Condition>): () => Promise<Condition> {
  let at = 0;
  let last: Promise<Condition> | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - at > CACHE_MS) {
      at = now;
      last = fn();
    }
    return last;
  };
}

export class NodeStatus implements NodeInfo {
  readonly runtimeVersion: string;
  readonly cgroupDriver: "cgroupfs" | "systemd";
  readonly handlers: string[];
  podCidr = "";
  /** Set once at start from probeUserNamespaces. */
  userNamespaces = false;
  readonly runtimeCondition: () => Promise<Condition>;
  readonly networkCondition: () => Promise<Condition>;

  /** `network`, when given, answers NetworkReady (the CNI conf watcher); else the dir is re-read. */
  constructor(private readonly config: Config, version: string, network?: () => Promise<Condition>) {
    this.runtimeVersion = version;
    this.cgroupDriver = config.cgroup_driver;
    this.handlers = Object.keys(config.runtime.handlers);
    this.runtimeCondition = cached(() => this.checkRuntime());
    this.networkCondition = cached(network ?? (() => this.checkNetwork()));
  }

  private async checkRuntime(): Promise<Condition> {
    const handler = this.config.runtime.default_handler;
    const binary = this.config.runtime.handlers[handler]!.path;
    try {
      await ociRuntimeVersion(binary);
      return { ready: true, reason: "", message: "" };
    } catch (err) {
      return { ready: false, reason: "OCIRuntimeNotRunnable", message: `handler "${handler}": ${(err as Error).message}` };
    }
  }

  private async checkNetwork(): Promise<Condition> {
    const { conf_dir: dir, bin_dirs: binDirs } = this.config.cni;
    let loaded;
    try {
      loaded = await loadNetworkConfig(dir);
    } catch (err) {
      return { ready: false, reason: "NetworkPluginNotReady", message: `cannot read CNI conf dir ${dir}: ${(err as Error).message}` };
    }
    if (!loaded.config) {
      const extra = loaded.skipped.length ? ` (skipped: ${loaded.skipped.join("; ")})` : "";
      return { ready: false, reason: "NetworkPluginNotReady", message: `no CNI network config found in ${dir}${extra}` };
    }
    const missing: string[] = [];
    for (const p of loaded.config.plugins) {
      if (!(await findPlugin(p.type, binDirs))) missing.push(p.type);
    }
    if (missing.length) {
      return { ready: false, reason: "NetworkPluginNotReady", message: `CNI network "${loaded.config.name}" (${loaded.config.file}) needs plugins not found in ${binDirs.join(":")}: ${missing.join(", ")}` };
    }
    return { ready: true, reason: "", message: "" };
  }

  /** Every configured handler, and the default one again under "" (the CRI's name for it: what a pod naming no handler gets). */
  async handlerFeatures(): Promise<Array<{ name: string; recursiveReadOnlyMounts: boolean }>> {
    const names = ["", ...this.handlers];
    return Promise.all(names.map(async (name) => {
      const h = this.config.runtime.handlers[name || this.config.runtime.default_handler]!;
      return { name, ...(await probeHandlerFeatures(h.path)) };
    }));
  }

  effectiveConfig(): unknown {
    return { ...this.config, pod_cidr: this.podCidr };
  }

  setPodCidr(cidr: string): void {
    this.podCidr = cidr;
  }
}
