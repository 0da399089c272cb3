// ExecSync (Exec, Attach and PortForward hand out streaming URLs and live with the streaming server).
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import { unary, type RuntimeHandlers } from "./rpc.js";

export interface ExecSyncer {
  execSync(id: string, cmd: string[], timeoutSec: number): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }>;
}

export function execHandlers(e: ExecSyncer, log: Logger): Pick<RuntimeHandlers, "execSync"> {
  return {
    execSync: unary(log, "ExecSync", async (req) => {
      if (!req.containerId) throw new InvalidArgument("container_id is required");
      if (req.cmd.length === 0) throw new InvalidArgument("cmd is required");
      if (req.timeout < 0n) throw new InvalidArgument(`timeout ${req.timeout} must not be negative`);
      return e.execSync(req.containerId, req.cmd, Number(req.timeout));
    }),
  };
}
