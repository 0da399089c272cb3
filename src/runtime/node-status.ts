// The node's readiness as the CRI Status RPC reports it, from what berth already knows rather
// than a process per call (kubelet asks every 5 s). RuntimeReady: the default handler's binary
// ran (`--version`) at start and again only when its file changed (one stat per Status) or
// after a runtime call could not start it (runc.ts reports those). NetworkReady: the CNI conf
// watcher's answer, which follows the conf dir.
import { stat } from "node:fs/promises";
import type { Condition, NodeInfo } from "../cri/runtime-info.js";
import type { Config } from "../config.js";
import { findBinary } from "./container.js";
import { ociRuntimeVersion } from "./runc.js";

const READY: Condition = { ready: true, reason: "", message: "" };

/** RuntimeReady for one handler's binary, re-run only when the file or a call says it changed. */
export class HandlerReadiness {
  /** Resolved path of the binary last found. */
  private path: string | undefined;
  /** dev/ino/mtime/ctime/size of the file `--version` last ran from; undefined until it ran. */
  private verified: string | undefined;
  /** Why a runtime call could not start the binary, until the next check runs it again. */
  private callFailure: string | undefined;
  private checking: Promise<Condition> | undefined;

  constructor(readonly handler: string, readonly binary: string) {}

  /** A runtime call could not start `binary` (no such file, not executable, bad interpreter). */
  callFailed(binary: string, why: string): void {
    if (binary === this.path || binary === this.binary) this.callFailure = why;
  }

  async condition(): Promise<Condition> {
    let identity: string;
    try {
      this.path ??= await findBinary(this.binary);
      const st = await stat(this.path, { bigint: true });
      identity = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}:${st.size}`;
    } catch (err) {
      this.path = undefined;
      this.verified = undefined;
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
  readonly runtime: HandlerReadiness;

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

  runtimeCondition(): Promise<Condition> {
    return this.runtime.condition();
  }

  networkCondition(): Promise<Condition> {
    return this.network();
  }

  effectiveConfig(): unknown {
    return { ...this.config, pod_cidr: this.podCidr };
  }

  setPodCidr(cidr: string): void {
    this.podCidr = cidr;
  }
}
