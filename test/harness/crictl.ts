// Running the real crictl (env CRICTL) against a berthd socket, for the crictl suites.
import assert from "node:assert/strict";
import { sh } from "../sandbox-net.js";

export const CRICTL = process.env.CRICTL;

export const CRICTL_SKIP = CRICTL ? false : "set CRICTL to a crictl binary (e.g. /work/tools/v1.29.0/crictl) to run";

export interface Crictl {
  /** Runs crictl with these args; stdout trimmed. */
  run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Runs crictl and asserts it exits 0; resolves with its trimmed stdout. */
  ok(...args: string[]): Promise<string>;
}

/** crictl pointed at `socket()` (read at each call: the suite's berthd may be restarted). */
export function crictlFor(socket: () => string, opts: { imageEndpoint?: boolean } = {}): Crictl {
  const run = async (...args: string[]) => {
    const endpoint = `unix://${socket()}`;
    const r = await sh(CRICTL!, ["--runtime-endpoint", endpoint, ...(opts.imageEndpoint ? ["--image-endpoint", endpoint] : []), "--timeout", "30s", ...args], { timeout: 60_000 });
    return { ...r, stdout: r.stdout.trim() };
  };
  return {
    run,
    ok: async (...args: string[]) => {
      const r = await run(...args);
      assert.equal(r.code, 0, `crictl ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    },
  };
}
