// The node's readiness as the CRI Status RPC reports it, from what berth already knows rather
// than a process per call (kubelet asks every 5 s). RuntimeReady: the default handler's binary
// ran (`--version`) at start and again only when its file changed (an inotify watch on it; one
// stat per Status where the watch cannot be set) or after a runtime call could not start it
// (runc.ts reports those). NetworkReady: the CNI conf watcher's answer, which follows the conf dir.
import { watch, type FSWatcher } from "node:fs";
import { stat } from "node:fs/promises";
import type { Condition, NodeInfo } from "./node-info.js";
import type { Config } from "../config.js";
import { findBinary } from "./oci/runtimes.js";
import { ociRuntimeVersion } from "./oci/runc.js";
import { probeHandlerFeatures } from "./handler-features.js";

const READY: Condition = { ready: true, reason: "", message: "" };

/** What changes when a file is rewritten, replaced, chmod-ed or touched. */
async function identityOf(file: string): Promise<string> {
  const st = await stat(file, { bigint: true });
  return `${st.dev}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}:${st.size}`;
}

/** RuntimeReady for one handler's binary, re-run only when the file or a call says it changed. */
export class HandlerReadiness {
  /** Resolved path of the binary last found. */
  private path: string | undefined;
  /** dev/ino/mtime/ctime/size of the file `--version` last ran from; undefined until it ran. */
  private verified: string | undefined;
  /** Why a runtime call could not start the binary, until the next check runs it again. */
  private callFailure: string | undefined;
  private checking: Promise<Condition> | undefined;
  /** Watches the verified file: any change (write, chmod, rename, removal) drops the verification. */
  private watcher: FSWatcher | undefined;

  constructor(readonly handler: string, readonly binary: string) {}

  close(): void {
    this.unwatch();
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private watchFile(file: string): void {
    this.unwatch();
    try {
      const w = watch(file, { persistent: false }, () => {
        this.verified = undefined;
        this.unwatch();
      });
      w.on("error", () => {
        this.verified = undefined;
        this.unwatch();
      });
      this.watcher = w;
    } catch {
      // No watch: every Status stats the file instead.
    }
  }

  /** A runtime call could not start `binary` (no such file, not executable, bad interpreter). */
  callFailed(binary: string, why: string): void {
    if (binary === this.path || binary === this.binary) this.callFailure = why;
  }

  async condition(): Promise<Condition> {
    if (this.watcher && this.verified !== undefined && this.callFailure === undefined) return READY;
    let identity: string;
    try {
      this.path ??= await findBinary(this.binary);
      identity = await identityOf(this.path);
    } catch (err) {
      this.path = undefined;
      this.verified = undefined;
      this.unwatch();
      return this.notReady(`${this.binary} is not there (${(err as Error).message}); install it or fix runtime.handlers.${this.handler}.path`);
    }
    if (identity === this.verified && this.callFailure === undefined) return READY;
    // New, changed or failing: run it once, shared by concurrent callers.
    return (this.checking ??= this.verify(this.path, identity).finally(() => (this.checking = undefined)));
  }

  private async verify(file: string, identity: string): Promise<Condition> {
    const failure = this.callFailure;
    try {
      await ociRuntimeVersion(file);
    } catch (err) {
      this.verified = undefined;
      return this.notReady(failure ? `a runtime call could not start it: ${failure}; \`${file} --version\`: ${(err as Error).message}` : (err as Error).message);
    }
    this.verified = identity;
    this.watchFile(file);
    // Changed between the stat and the watch: check again next time.
    if ((await identityOf(file).catch(() => undefined)) !== identity) this.verified = undefined;
    // A failure reported while `--version` ran is kept for the next check.
    if (this.callFailure === failure) this.callFailure = undefined;
    return READY;
  }

  private notReady(message: string): Condition {
    return { ready: false, reason: "OCIRuntimeNotRunnable", message: `handler "${this.handler}": ${message}` };
  }
}

export class NodeStatus implements NodeInfo {
  readonly runtimeVersion: string;
  readonly cgroupDriver: "cgroupfs" | "systemd";
  readonly handlers: string[];
  podCidr = "";
  /** Set once at start from probeUserNamespaces. */
  userNamespaces = false;
  readonly runtime: HandlerReadiness;
  private features: Promise<Array<{ name: string; recursiveReadOnlyMounts: boolean }>> | undefined;

  /** `network` answers NetworkReady (the CNI conf watcher's condition). */
  constructor(private readonly config: Config, version: string, private readonly network: () => Promise<Condition>) {
    this.runtimeVersion = version;
    this.cgroupDriver = config.cgroup_driver;
    this.handlers = Object.keys(config.runtime.handlers);
    const handler = config.runtime.default_handler;
    this.runtime = new HandlerReadiness(handler, config.runtime.handlers[handler]!.path);
  }

  /** The start-up check of the handler binary. */
  async init(): Promise<void> {
    await this.runtime.condition();
  }

  close(): void {
    this.runtime.close();
  }

  runtimeCondition(): Promise<Condition> {
    return this.runtime.condition();
  }

  networkCondition(): Promise<Condition> {
    return this.network();
  }

  /** Every configured handler, and the default one again under "" (the CRI's name for it: what a pod naming no handler gets). */
  handlerFeatures(): Promise<Array<{ name: string; recursiveReadOnlyMounts: boolean }>> {
    // Each binary is probed once per daemon (handler-features.ts), so the list is made once too.
    return (this.features ??= Promise.all(["", ...this.handlers].map(async (name) => {
      const h = this.config.runtime.handlers[name || this.config.runtime.default_handler]!;
      return { name, ...(await probeHandlerFeatures(h.path)) };
    })));
  }

  effectiveConfig(): unknown {
    return { ...this.config, pod_cidr: this.podCidr };
  }

  setPodCidr(cidr: string): void {
    this.podCidr = cidr;
  }
}
