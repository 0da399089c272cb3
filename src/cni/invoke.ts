// Running one CNI plugin binary: the only place berth spawns a CNI plugin. The call follows
// the CNI spec: the command and attachment in CNI_* environment variables, the network
// config on stdin, a result (or a JSON error) on stdout.
import { spawn } from "node:child_process";
import { DeadlineExceeded, FailedPrecondition } from "../errors.js";
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

function cap(text: string, n = 2000): string {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

interface PluginRun {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  timedOut: boolean;
  /** Why it did not run or finish (spawn error, output over the cap, killed by a signal). */
  failed: string | undefined;
}

/**
 * node's spawn, not execa: a plugin runs on every pod start and stop (three or four in a
 * chain, plus their own children), and execa's per-call setup measured 0.9 ms over spawn's
 * 4 ms here. Output is capped; the timeout kills with SIGKILL.
 */
function runPlugin(binary: string, input: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<PluginRun> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    let failed: string | undefined;
    const child = spawn(binary, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const collect = (into: Buffer[], which: "stdout" | "stderr") => (d: Buffer) => {
      const n = which === "stdout" ? (outBytes += d.length) : (errBytes += d.length);
      if (n > MAX_OUTPUT) {
        failed ??= `${which} exceeded ${MAX_OUTPUT} bytes`;
        child.kill("SIGKILL");
        return;
      }
      into.push(d);
    };
    child.stdout!.on("data", collect(out, "stdout"));
    child.stderr!.on("data", collect(err, "stderr"));
    child.stdin!.on("error", () => undefined);
    child.stdin!.end(input);
    child.once("error", (e) => (failed ??= e.message));
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (signal && !timedOut) failed ??= `killed by ${signal}`;
      resolve({ stdout: Buffer.concat(out).toString("utf8").replace(/\n$/, ""), stderr: Buffer.concat(err).toString("utf8").replace(/\n$/, ""), exitCode: code, timedOut, failed });
    });
  });
}

/** Runs the plugin; resolves with its parsed result (undefined when it printed nothing, as DEL may). */
export async function invokePlugin(call: PluginCall): Promise<unknown> {
  const binary = await findPlugin(call.type, call.binDirs);
  if (!binary) throw new FailedPrecondition(`CNI plugin "${call.type}" not found in ${call.binDirs.join(":")}`);
  const r = await runPlugin(binary, JSON.stringify(call.input), {
    ...process.env,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifName,
    CNI_ARGS: call.cniArgs,
    CNI_PATH: call.binDirs.join(":"),
  }, call.timeoutMs);
  const what = `CNI plugin "${call.type}" ${call.command}`;
  if (r.timedOut) throw new DeadlineExceeded(`${what} timed out after ${call.timeoutMs} ms (cni.plugin_timeout)${r.stderr ? `; stderr: ${cap(r.stderr)}` : ""}`);
  if (r.exitCode !== 0 || r.failed) {
    let detail = r.failed ?? (r.stdout ? cap(r.stdout) : `exit code ${r.exitCode}`);
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
