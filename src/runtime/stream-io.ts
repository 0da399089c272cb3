// What the runtime's streaming sessions run on (src/runtime/streaming.ts implements StreamRuntime):
// the client's side of a session and its terminal resizes. The streaming server (src/stream) is
// above the runtime and drives it through this contract.
import { EventEmitter } from "node:events";
import type { Duplex, Readable, Writable } from "node:stream";

export interface TerminalSize {
  width: number;
  height: number;
}

/** Terminal size changes sent by the client; `latest` is the last one seen (the initial size, if any). */
export class TerminalResizes extends EventEmitter<{ resize: [TerminalSize] }> {
  latest: TerminalSize | undefined;
  push(size: TerminalSize): void {
    this.latest = size;
    this.emit("resize", size);
  }
}

/** The client's side of a session, as the runtime sees it. Absent streams were not requested. */
export interface StreamIO {
  tty: boolean;
  stdin?: Readable;
  stdout?: Writable;
  /** Never set when tty (the terminal merges stderr into stdout). */
  stderr?: Writable;
  resize: TerminalResizes;
  /** Aborted when the client goes away or the session times out: release everything. */
  signal: AbortSignal;
}

export interface StreamRuntime {
  /** Throws NotFound / FailedPrecondition unless the container exists and is running. */
  checkContainer(containerId: string): Promise<void>;
  /** Throws NotFound / FailedPrecondition unless the sandbox exists and is ready. */
  checkSandbox(sandboxId: string): Promise<void>;
  /** Runs cmd in the container wired to io; resolves with its exit code once it ended and its output is flushed. */
  exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }>;
  /** Attaches io to the container's own stdio; resolves when the container exits or the client detaches. */
  attach(containerId: string, io: StreamIO): Promise<void>;
  /** Connects to localhost:port inside the sandbox's network namespace and pipes conn both ways until either side ends. */
  portForward(sandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void>;
}
