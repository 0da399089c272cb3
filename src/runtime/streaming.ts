// The processes behind berth's streaming server: exec and attach go to the container's OCI
// runtime (oci/runtime.ts: `runc exec` behind a pty berthd holds when tty; conmon's attach
// socket and control fifo), port forward is a TCP connection made inside the pod's network
// namespace.
import net, { type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { status as grpcStatus } from "../grpc/status.js";
import { codeOf, FailedPrecondition, NotFound, wrap } from "../errors.js";
import type { Logger } from "../log.js";
import { connectInNetns } from "../native/native.js";
import type { StreamIO, StreamRuntime } from "./stream-io.js";
import type { OciRuntime } from "./oci/runtime.js";
import type { OciRuntimes } from "./oci/runtimes.js";
import type { OciProcess } from "./spec.js";
import type { SandboxLookup } from "./types.js";

/** What streaming needs to know about a container (the container layer provides it). */
export interface StreamContainer {
  id: string;
  running: boolean;
  /** The container's own process has a terminal (attach sees one merged stream). */
  tty: boolean;
  /** Closing the attach input closes the container's stdin. */
  stdinOnce: boolean;
  /** The container's process settings, the base of every exec. */
  process: OciProcess;
  /** Its handler's OCI runtime. */
  runtime: OciRuntime;
}

export interface StreamContainers {
  getStreamContainer(id: string): Promise<StreamContainer | undefined>;
}

/** What streaming reads of the container layer's record (container-record.ts). */
export interface ContainerRecordView {
  id: string;
  phase: "created" | "running" | "exited";
  tty: boolean;
  stdinOnce: boolean;
  handler: string;
  process: OciProcess;
}

/** The container layer's records, seen as streaming targets. */
export function streamContainersOf(containers: { record(id: string): Promise<ContainerRecordView> }, runtimes: OciRuntimes): StreamContainers {
  return {
    async getStreamContainer(id: string): Promise<StreamContainer | undefined> {
      let r: ContainerRecordView;
      try {
        r = await containers.record(id);
      } catch (err) {
        if (codeOf(err) === grpcStatus.NOT_FOUND) return undefined;
        throw err;
      }
      return { id: r.id, running: r.phase === "running", tty: r.tty, stdinOnce: r.stdinOnce, process: r.process, runtime: await runtimes.get(r.handler) };
    },
  };
}

export interface RuntimeStreamingDeps {
  containers: StreamContainers;
  sandboxes: SandboxLookup;
  log: Logger;
}

export class RuntimeStreaming implements StreamRuntime {
  constructor(private readonly deps: RuntimeStreamingDeps) {}

  private async running(id: string): Promise<StreamContainer> {
    const c = await this.deps.containers.getStreamContainer(id);
    if (!c) throw new NotFound(`container "${id}" not found`);
    if (!c.running) throw new FailedPrecondition(`container "${id}" is not running`);
    return c;
  }

  async checkContainer(containerId: string): Promise<void> {
    await this.running(containerId);
  }

  async checkSandbox(sandboxId: string): Promise<void> {
    const s = this.deps.sandboxes.getSandbox(sandboxId);
    if (!s) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    if (s.state !== "ready") throw new FailedPrecondition(`pod sandbox "${sandboxId}" is not ready`);
  }

  async exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }> {
    const c = await this.running(containerId);
    try {
      return { exitCode: await c.runtime.exec(c.id, c.process, cmd, io, this.deps.log) };
    } catch (err) {
      throw wrap(`exec in container ${containerId}`, err);
    }
  }

  async attach(containerId: string, io: StreamIO): Promise<void> {
    const c = await this.running(containerId);
    await c.runtime.attach(c, io, this.deps.log);
  }

  async portForward(sandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const s = this.deps.sandboxes.getSandbox(sandboxId);
    if (!s) throw new NotFound(`pod sandbox "${sandboxId}" not found`);
    if (s.state !== "ready") throw new FailedPrecondition(`pod sandbox "${sandboxId}" is not ready`);
    let tcp: Socket;
    try {
      tcp = s.netnsPath ? await connectInNetns(s.netnsPath, port) : await connectHost(port);
    } catch (err) {
      throw wrap(`connect to localhost:${port} in pod ${sandboxId}`, err);
    }
    await pipeBothWays(conn, tcp, signal);
  }
}

function connectHost(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Copies both ways (half-closes carried across) until the TCP side closes or the client goes away. */
export function pipeBothWays(conn: Duplex, tcp: Socket, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    tcp.on("error", () => undefined);
    conn.on("error", () => undefined);
    conn.pipe(tcp);
    tcp.pipe(conn);
    const done = () => {
      signal.removeEventListener("abort", done);
      tcp.destroy();
      resolve();
    };
    tcp.once("close", done);
    conn.once("close", done);
    if (signal.aborted) done();
    else signal.addEventListener("abort", done, { once: true });
  });
}
