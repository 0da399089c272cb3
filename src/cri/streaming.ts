// Exec, Attach, PortForward: validate the request and hand back a single-use streaming URL.
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import type { StreamingService } from "../stream/types.js";
import { unary, type RuntimeHandlers } from "./rpc.js";

function checkStdio(r: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): void {
  if (!r.stdin && !r.stdout && !r.stderr) throw new InvalidArgument("one of stdin, stdout or stderr must be set");
  if (r.tty && r.stderr) throw new InvalidArgument("tty and stderr cannot both be set: a terminal merges stderr into stdout");
}

function checkId(what: string, id: string): void {
  if (id === "") throw new InvalidArgument(`${what} must be set`);
}

export function streamingHandlers(streams: StreamingService, log: Logger): Pick<RuntimeHandlers, "exec" | "attach" | "portForward"> {
  return {
    exec: unary(log, "Exec", async (req) => {
      checkId("container_id", req.containerId);
      if (req.cmd.length === 0 || req.cmd[0] === "") throw new InvalidArgument("cmd must name a command to run");
      checkStdio(req);
      const url = await streams.exec({ containerId: req.containerId, cmd: req.cmd, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
      return { url };
    }),

    attach: unary(log, "Attach", async (req) => {
      checkId("container_id", req.containerId);
      checkStdio(req);
      const url = await streams.attach({ containerId: req.containerId, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr });
      return { url };
    }),

    portForward: unary(log, "PortForward", async (req) => {
      checkId("pod_sandbox_id", req.podSandboxId);
      const bad = req.port.find((p) => !Number.isInteger(p) || p < 1 || p > 65535);
      if (bad !== undefined) throw new InvalidArgument(`port ${bad} is out of range: ports are 1..65535`);
      const url = await streams.portForward({ sandboxId: req.podSandboxId, ports: req.port });
      return { url };
    }),
  };
}
