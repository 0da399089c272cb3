// What the CRI front asks about the node (Version, Status, RuntimeConfig): its runtime, handlers
// and readiness conditions. NodeStatus (node-status.ts) answers it; cri/runtime-info.ts maps it.

export interface Condition {
  ready: boolean;
  reason: string;
  message: string;
}

/** What the CRI front needs to know about the node runtime. */
export interface NodeInfo {
  readonly runtimeVersion: string;
  readonly cgroupDriver: "cgroupfs" | "systemd";
  readonly handlers: string[];
  /** Per handler: what its OCI runtime on this kernel supports. */
  handlerFeatures(): Promise<Array<{ name: string; recursiveReadOnlyMounts: boolean }>>;
  /** Pods may have their own user namespace on every handler (the host can make idmapped mounts). */
  readonly userNamespaces: boolean;
  runtimeCondition(): Promise<Condition>;
  networkCondition(): Promise<Condition>;
  /** The effective configuration, for Status verbose. */
  effectiveConfig(): unknown;
  setPodCidr(cidr: string): void;
}
