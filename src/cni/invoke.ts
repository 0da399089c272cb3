// Running one CNI plugin binary: the only place berth spawns a CNI plugin. The call follows
// the CNI spec: the command and attachment in CNI_* environment variables, the network
// config on stdin, a result (or a JSON error) on stdout.
import { DeadlineExceeded, FailedPrecondition } from "../errors.js";
import { runCaptured } from "../run-captured.js";
import { findPlugin } from "./config.js";

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";

export interface PluginCall {
  command: CniCommand;
  /** The plugin's `type`: the binary's name in one of binDirs. */
  type: string;
  containerId: string;
  /** Path of the network namespace (empty for VERSION). */
  netns: string;
  ifName: string;
  /** Already formatted CNI_ARGS ("K=V;K=V"). */
  cniArgs: string;
  binDirs: string[];
  /** The network config the plugin reads on stdin. */
  input: Record<string, unknown>;
  timeoutMs: number;
}

/** A plugin's failure, with the spec's error code when the plugin printed one. */
export class CniPluginError extends Error {
  constructor(message: string, readonly cniCode?: number) {
    super(message);
  }
}

const MAX_OUTPUT = 1 << 20;

/** Where plugin call durations go (the metrics endpoint's histogram). */
export interface PluginCallRecorder {
  observe(plugin: string, command: CniCommand, seconds: number): void;
}

let pluginRecorder: PluginCallRecorder | undefined;

export function recordPluginCalls(r: PluginCallRecorder | undefined): void {
  pluginRecorder = r;
}

function cap(text: string, n = 2000): string {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

/** Runs the plugin; resolves with its parsed result (undefined when it printed nothing, as DEL may). */
export async function invokePlugin(call: PluginCall): Promise<unknown> {
  const binary = await findPlugin(call.type, call.binDirs);
  if (!binary) throw new FailedPrecondition(`CNI plugin "${call.type}" not found in ${call.binDirs.join(":")}`);
  const started = performance.now();
  const r = await runCaptured(binary, [], {
    input: JSON.stringify(call.input),
    env: {
      ...process.env,
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.containerId,
      CNI_NETNS: call.netns,
      CNI_IFNAME: call.ifName,
      CNI_ARGS: call.cniArgs,
      CNI_PATH: call.binDirs.join(":"),
    },
    timeoutMs: call.timeoutMs,
    maxOutput: MAX_OUTPUT,
  });
  pluginRecorder?.observe(call.type, call.command, (performance.now() - started) / 1000);
  const what = `CNI plugin "${call.type}" ${call.command}`;
  if (r.timedOut) throw new DeadlineExceeded(`${what} timed out after ${call.timeoutMs} ms (cni.plugin_timeout)${r.stderr ? `; stderr: ${cap(r.stderr)}` : ""}`);
  if (r.failed) {
    let detail = r.failedWhy ?? (r.stdout ? cap(r.stdout) : `exit code ${r.exitCode}`);
    let code: number | undefined;
    try {
      const e = JSON.parse(r.stdout) as { code?: number; msg?: string; details?: string };
      if (typeof e.msg === "string") {
        code = e.code;
        detail = `${e.msg}${e.details ? `: ${e.details}` : ""}${code !== undefined ? ` (CNI error code ${code})` : ""}`;
      }
    } catch {
      // not a JSON error: keep stdout as it is
    }
    throw new CniPluginError(`${what} failed: ${detail}${r.stderr ? `; stderr: ${cap(r.stderr)}` : ""}`, code);
  }
  if (r.stdout.trim() === "") return undefined;
  try {
    return JSON.parse(r.stdout) as unknown;
  } catch {
    throw new CniPluginError(`${what} printed a result that is not JSON: ${cap(r.stdout, 300)}`);
  }
}
