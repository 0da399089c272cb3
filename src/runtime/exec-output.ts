// ExecSync's answer must fit one gRPC message: kubelet (and berth's server) allow 16 MiB, so
// 16 MiB of stdout (the per-stream cap) plus any stderr and the framing was RESOURCE_EXHAUSTED.

/** What stdout and stderr may hold together, leaving room for the response's framing. */
export const EXEC_RESPONSE_BUDGET = 16 * 1024 * 1024 - 4096;

/** Trims the streams to the budget: stdout keeps its bytes first, stderr gets what is left. */
export function fitExecResponse(stdout: Buffer, stderr: Buffer, budget = EXEC_RESPONSE_BUDGET): { stdout: Buffer; stderr: Buffer } {
  const out = stdout.subarray(0, budget);
  return { stdout: out, stderr: stderr.subarray(0, Math.max(0, budget - out.length)) };
}
