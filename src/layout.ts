// Where berth keeps things: every path under `root` (persistent) and `state` (volatile) is
// named here once, for the daemon, the runtime, recovery's sweep and the tests alike.
import path from "node:path";

/** The config keys the layout depends on (a Config fits). */
export interface LayoutConfig {
  root: string;
  state: string;
  runtime: { handlers: Record<string, { root: string }> };
}

/** A container's files in its bundle (<state>/containers/<id>), some written by runc and conmon. */
export interface BundleFiles {
  dir: string;
  /** The OCI spec runc creates the container from. */
  spec: string;
  /** The container's init pid (runc writes it for conmon). */
  pidFile: string;
  conmonPidFile: string;
  /** conmon's own messages. */
  conmonLog: string;
  /** conmon's control fifo: log reopen and window resize lines. */
  ctl: string;
  /** conmon's attach socket (SOCK_SEQPACKET). */
  attach: string;
  /** Present once the OOM killer ended the container (conmon writes it). */
  oom: string;
  /** The CRI log when the pod has no log directory (and always for an infra container). */
  containerLog: string;
  infraLog: string;
}

/** <root>/image, for the image store (which names its own sub-dirs). */
export function imageRootOf(root: string): string {
  return path.join(root, "image");
}

/** <root>/cni/results, for the CNI layer's result cache. */
export function cniResultsOf(root: string): string {
  return path.join(root, "cni", "results");
}

export class StateLayout {
  constructor(private readonly c: LayoutConfig) {}

  get root(): string {
    return this.c.root;
  }

  get state(): string {
    return this.c.state;
  }

  // ---- under root ------------------------------------------------------------------------

  /** Container records (the crash-safe store). */
  get containerRecords(): string {
    return path.join(this.c.root, "containers");
  }

  /** Pod sandbox records. */
  get sandboxRecords(): string {
    return path.join(this.c.root, "sandboxes");
  }

  /** The image store: blobs/sha256 (manifests, configs), layers/<n>, snapshots/<key>, meta (records). */
  get imageRoot(): string {
    return imageRootOf(this.c.root);
  }

  /** A container's rootfs snapshot (upper, work and the overlay mount). */
  snapshot(key: string): string {
    return path.join(this.imageRoot, "snapshots", key);
  }

  /** The CNI result cache (one file per attachment). */
  get cniResults(): string {
    return cniResultsOf(this.c.root);
  }

  // ---- under state -----------------------------------------------------------------------

  /** OCI bundles, one dir per container id. */
  get bundles(): string {
    return path.join(this.c.state, "containers");
  }

  bundle(id: string): BundleFiles {
    const dir = path.join(this.bundles, id);
    return {
      dir,
      spec: path.join(dir, "config.json"),
      pidFile: path.join(dir, "pidfile"),
      conmonPidFile: path.join(dir, "conmon.pid"),
      conmonLog: path.join(dir, "conmon.log"),
      ctl: path.join(dir, "ctl"),
      attach: path.join(dir, "attach"),
      oom: path.join(dir, "oom"),
      containerLog: path.join(dir, "container.log"),
      infraLog: path.join(dir, "infra.log"),
    };
  }

  /** conmon's exit files: <exits>/<id> holds the container's exit code. */
  get exits(): string {
    return path.join(this.c.state, "exits");
  }

  exitFile(id: string): string {
    return path.join(this.exits, id);
  }

  /** conmon's attach socket links (<sockets>/<id> -> the bundle); short, as conmon cuts link names at 107 bytes. */
  get sockets(): string {
    return path.join(this.c.state, "s");
  }

  socketLink(id: string): string {
    return path.join(this.sockets, id);
  }

  /** The private socket the start-up warm-up calls come in on (src/grpc/warmup.ts), there only while it runs. */
  get warmupSocket(): string {
    return path.join(this.c.state, "warmup.sock");
  }

  /** Mounts staged for containers: <stagedMounts>/<container id>/<n> (image volumes, idmapped binds). */
  get stagedMounts(): string {
    return path.join(this.c.state, "mounts");
  }

  /** Pid and process files of streaming execs. */
  get execs(): string {
    return path.join(this.c.state, "exec");
  }

  /** A handler's OCI runtime state (its --root): configured, else <state>/runtime/<handler>. */
  runtimeRoot(handler: string): string {
    return this.c.runtime.handlers[handler]?.root || path.join(this.c.state, "runtime", handler);
  }

  /** Namespace pins of every pod. */
  get pins(): string {
    return path.join(this.c.state, "ns");
  }

  /** A pod's namespace pins: <pins>/<id>/{net,ipc,uts}. */
  pinDir(podId: string): string {
    return path.join(this.pins, podId);
  }

  /** Pod dirs (hostname, hosts, resolv.conf, shm). */
  get pods(): string {
    return path.join(this.c.state, "pods");
  }

  podDir(podId: string): string {
    return path.join(this.pods, podId);
  }

  /** The files a pod's containers get bind-mounted. */
  podFiles(podId: string): { resolvConf: string; hosts: string; hostname: string } {
    const dir = this.podDir(podId);
    return { resolvConf: path.join(dir, "resolv.conf"), hosts: path.join(dir, "hosts"), hostname: path.join(dir, "hostname") };
  }

  /** A pod's /dev/shm tmpfs (unless it uses the host's IPC namespace). */
  podShm(podId: string): string {
    return path.join(this.podDir(podId), "shm");
  }

  /** A pinned namespace of a pod. */
  pin(podId: string, kind: "net" | "ipc" | "uts" | "user"): string {
    return path.join(this.pinDir(podId), kind);
  }
}
