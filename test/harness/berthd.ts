// Starts a real berthd (bin/berthd) on a private socket, root and state, for one test file.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connectCri, type CriClient } from "../../src/cri/client.js";
import { StateLayout } from "../../src/layout.js";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const BERTHD = path.join(REPO, "bin/berthd");
/** bin/berthd runs as an executable (its shebang carries berthd's node flags), with this node first on PATH. */
export const BERTHD_ENV: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? "/usr/bin:/bin"}` };

export interface Berthd {
  dir: string;
  socket: string;
  root: string;
  state: string;
  /** Where this berthd keeps each thing under root and state (the default handler roots). */
  layout: StateLayout;
  configFile: string;
  cri: CriClient;
  proc: ChildProcess;
  /** Everything berthd wrote to stderr so far. */
  logs(): string;
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Starts a fresh berthd on the same dirs and config (after stop or a kill -9); `overrides` replace options (e.g. env). */
  restart(overrides?: Partial<BerthdOptions>): Promise<Berthd>;
  /** Stops berthd if running and removes the temp dir; with removePods, the pods (and their containers) go first. */
  cleanup(opts?: { removePods?: boolean }): Promise<void>;
}

export interface BerthdOptions {
  /** TOML appended to the generated config (root/state/socket are set already). */
  config?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Use this dir; a config already written there (by an earlier start) is reused. */
  dir?: string;
  /** Another berthd executable (an installed one) instead of the checkout's bin/berthd. */
  berthd?: string;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function startBerthd(opts: BerthdOptions = {}): Promise<Berthd> {
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), "berth-test-")));
  const root = path.join(dir, "root");
  const state = path.join(dir, "state");
  const socket = path.join(dir, "berth.sock");
  const configFile = path.join(dir, "berth.toml");
  if (!(await stat(configFile).then(() => true, () => false))) {
    await mkdir(path.join(dir, "cni"), { recursive: true });
    // No start-up warm-up (its own test turns it on): test daemons start by the dozen, side by side.
    const warmup = opts.config && /^warmup_calls\s*=/m.test(opts.config) ? "" : "warmup_calls = 0\n";
    const base = `root = "${root}"\nstate = "${state}"\nsocket = "${socket}"\nlog_level = "debug"\n${warmup}`;
    // Test daemons run side by side: none takes the fixed default metrics port unless its test asks for one.
    const metrics = opts.config?.includes("[metrics]") ? "" : `[metrics]\naddress = ""\n`;
    await writeFile(configFile, base + (opts.config ?? "") + (opts.config && !opts.config.endsWith("\n") ? "\n" : "") + metrics);
  }
  let out = "";
  const proc = spawn(opts.berthd ?? BERTHD, ["--config", configFile, "--cni-conf-dir", path.join(dir, "cni"), ...(opts.args ?? [])], {
    env: { ...BERTHD_ENV, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  let dead = false;
  exited.then(() => (dead = true));
  await waitFor(`berthd socket ${socket}`, async () => {
    if (dead) return "dead";
    return (await stat(socket).then((s) => s.isSocket(), () => false)) && out.includes("berthd serving");
  }, 20_000).catch((err) => {
    proc.kill("SIGKILL");
    throw err;
  });
  if (dead) throw new Error(`berthd exited early:\n${out}`);
  const cri = connectCri(socket);
  const self: Berthd = {
    dir, socket, root, state, configFile, cri, proc,
    layout: new StateLayout({ root, state, runtime: { handlers: {} } }),
    logs: () => out,
    stop: async (signal = "SIGTERM") => {
      cri.close();
      if (!dead) proc.kill(signal);
      return exited;
    },
    restart: async (overrides = {}) => startBerthd({ ...opts, ...overrides, dir }),
    cleanup: async (opts = {}) => {
      if (opts.removePods && !dead) await removeAllPods(self);
      await self.stop("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}

/** Runs berthd to completion with these args (for --help, config errors and the like). */
export function runBerthd(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(BERTHD, args, { env: { ...BERTHD_ENV, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    proc.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Stops and removes every pod berthd lists (their containers go with them), ignoring errors: test clean-up. */
export async function removeAllPods(d: Berthd): Promise<void> {
  for (const p of (await d.cri.runtime.listPodSandbox({}).catch(() => ({ items: [] }))).items) {
    await d.cri.runtime.stopPodSandbox({ podSandboxId: p.id }).catch(() => undefined);
    await d.cri.runtime.removePodSandbox({ podSandboxId: p.id }).catch(() => undefined);
  }
}
