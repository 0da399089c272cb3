// A StreamRuntime over real host processes and host TCP ports, for testing the streaming
// protocols apart from containers: exec runs the command on the host through the same
// process wiring berth uses for runc (src/runtime/oci/exec-stream.ts); port forward connects to
// 127.0.0.1 on the host. Attach is not offered (it needs conmon).
import type { Duplex } from "node:stream";
import type { Logger } from "../../src/log.js";
import { NotFound } from "../../src/errors.js";
import { pipeBothWays } from "../../src/runtime/streaming.js";
import { runWired } from "../../src/runtime/oci/exec-stream.js";
import net from "node:net";
import type { StreamIO, StreamRuntime } from "../../src/runtime/stream-io.js";

export class HostRuntime implements StreamRuntime {
  /** Pids of commands started and not yet reaped, for leak checks. */
  readonly live = new Set<number>();
  readonly containers = new Set<string>(["host"]);

  constructor(private readonly log: Logger) {}

  async checkContainer(id: string): Promise<void> {
    if (!this.containers.has(id)) throw new NotFound(`container "${id}" not found`);
  }
  async checkSandbox(id: string): Promise<void> {
    if (!this.containers.has(id)) throw new NotFound(`pod sandbox "${id}" not found`);
  }
  async exec(_id: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }> {
    const exitCode = await runWired({ file: cmd[0]!, args: cmd.slice(1) }, io, this.log);
    return { exitCode };
  }
  async attach(): Promise<void> {
    throw new Error("the host runtime cannot attach");
  }
  async portForward(_id: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const tcp = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1", () => resolve(s));
      s.once("error", reject);
    });
    await pipeBothWays(conn, tcp, signal);
  }
}
