// Running the real crictl (env CRICTL) against a berthd socket, for the crictl suites.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { sh } from "../sandbox-net.js";

export const CRICTL = process.env.CRICTL;

export const CRICTL_SKIP = CRICTL ? false : "set CRICTL to a crictl binary (e.g. /work/tools/v1.29.0/crictl) to run";

/**
 * crictl's first arguments for a berthd socket. `--config /dev/null`: no crictl.yaml of the host's
 * is read, and crictl 1.32 no longer warns on stderr that /etc/crictl.yaml is missing.
 */
export function crictlArgs(socket: string): string[] {
  return ["--config", "/dev/null", "--runtime-endpoint", `unix://${socket}`];
}

/** Ends a long-running crictl (attach, port-forward): SIGINT, then SIGKILL if it is still there after 5 s. */
export async function stopCrictl(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGINT");
  const t = setTimeout(() => p.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(t);
}

export interface Crictl {
  /** Runs crictl with these args; stdout trimmed. */
  run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Runs crictl and asserts it exits 0; resolves with its trimmed stdout. */
  ok(...args: string[]): Promise<string>;
}

/** crictl pointed at `socket()` (read at each call: the suite's berthd may be restarted). */
export function crictlFor(socket: () => string, opts: { imageEndpoint?: boolean } = {}): Crictl {
  const run = async (...args: string[]) => {
    const r = await sh(CRICTL!, [...crictlArgs(socket()), ...(opts.imageEndpoint ? ["--image-endpoint", `unix://${socket()}`] : []), "--timeout", "30s", ...args], { timeout: 60_000 });
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
