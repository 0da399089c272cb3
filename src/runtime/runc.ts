// The OCI runtime (runc or a compatible binary): the only module that spawns it.
import { runCaptured } from "../run-captured.js";
import { Internal, NotFound } from "../errors.js";
import type { OciProcess, OciResources } from "./spec.js";

export interface OciRuntimeInfo {
  version: string;
}

/** Runs `<binary> --version`; throws with the program's stderr when it does not run. */
export async function ociRuntimeVersion(binary: string): Promise<OciRuntimeInfo> {
  const r = await runCaptured(binary, ["--version"], { timeoutMs: 10_000 });
  if (r.failed) {
    const why = r.stderr || r.failedWhy || `exit code ${r.exitCode}`;
    throw new Error(`OCI runtime "${binary}" does not run: ${why}`);
  }
  return { version: r.stdout.split("\n")[0] ?? "" };
}

export interface RuncState {
  id: string;
  pid: number;
  status: "creating" | "created" | "running" | "stopped" | "paused" | string;
  bundle: string;
  created: string;
}

const NOT_EXIST = /does not exist|not found|no such file or directory/i;

/** One OCI runtime binary with its state root. */
export class OciRuntime {
  constructor(
    readonly binary: string,
    readonly root: string,
    readonly systemdCgroup: boolean,
  ) {}

  /** The flags every call starts with (also what conmon passes through --runtime-arg). */
  globalArgs(): string[] {
    return [`--root=${this.root}`, ...(this.systemdCgroup ? ["--systemd-cgroup"] : [])];
  }

  private async run(args: string[], input?: string): Promise<{ stdout: string; stderr: string; failed: boolean; exitCode: number | null; failedWhy?: string }> {
    return runCaptured(this.binary, [...this.globalArgs(), ...args], { input, timeoutMs: 60_000 });
  }

  private fail(what: string, id: string, r: { stderr: string; exitCode: number | null; failedWhy?: string }): never {
    const why = runcMessage(r.stderr) || r.failedWhy || `exit code ${r.exitCode}`;
    if (NOT_EXIST.test(why)) throw new NotFound(`${this.binary} ${what} ${id}: container does not exist in the runtime`);
    throw new Internal(`${this.binary} ${what} ${id}: ${why}`);
  }

  async start(id: string): Promise<void> {
    const r = await this.run(["start", id]);
    if (r.failed) this.fail("start", id, r);
  }

  /** Sends a signal; `all` reaches every process of the container's cgroup. Missing or stopped containers are not an error. */
  async kill(id: string, signal: string, all = false): Promise<void> {
    const r = await this.run(["kill", ...(all ? ["--all"] : []), id, signal]);
    if (r.failed && !/not running|does not exist|process already finished|container not running/i.test(r.stderr)) this.fail("kill", id, r);
  }

  /** Deletes the container from the runtime (force kills a live one); idempotent. */
  async delete(id: string, force = true): Promise<void> {
    const r = await this.run(["delete", ...(force ? ["--force"] : []), id]);
    if (r.failed && !NOT_EXIST.test(r.stderr)) this.fail("delete", id, r);
  }

  async state(id: string): Promise<RuncState | undefined> {
    const r = await this.run(["state", id]);
    if (r.failed) {
      if (NOT_EXIST.test(r.stderr)) return undefined;
      this.fail("state", id, r);
    }
    return JSON.parse(r.stdout) as RuncState;
  }

  /** Applies new cgroup limits to a live container. */
  async update(id: string, resources: Omit<OciResources, "devices">): Promise<void> {
    const r = await this.run(["update", "--resources", "-", id], JSON.stringify(resources));
    if (r.failed) this.fail("update", id, r);
  }
}

/** The msg="..." of runc's logrus lines (all of stderr when there is none). */
export function runcMessage(stderr: string): string {
  const msgs = [...stderr.matchAll(/level=error msg="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\"/g, '"'));
  return (msgs.length ? msgs.join("; ") : stderr).trim();
}

/** The process runc exec runs for ExecSync: the container's own settings with other args, no terminal. */
export function execProcess(base: OciProcess, cmd: string[], tty = false): OciProcess {
  const p: OciProcess = { ...base, args: [...cmd], terminal: tty };
  delete p.oomScoreAdj;
  return p;
}
