// The OCI runtime of each configured handler, built once from the config: every caller (create,
// the lifecycle calls, streaming, recovery) gets the same object for a handler. conmon's
// records of a container (pid files, exit file, OOM mark) do not depend on the handler: they
// are read here.
import { access, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parseDuration, type Config } from "../../config.js";
import { FailedPrecondition, InvalidArgument, isErrno } from "../../errors.js";
import { watchExit } from "../../native/native.js";
import type { StateLayout } from "../../layout.js";
import { isConmon, readPid } from "./conmon.js";
import { OciRuntime } from "./runtime.js";

/** What conmon recorded of a container's end. */
export interface ExitRecord {
  code: number;
  /** ns since the epoch: the exit file's mtime. */
  finishedAt: bigint;
}

/** `name` resolved on PATH (conmon is told the runtime by absolute path). */
export async function findBinary(name: string): Promise<string> {
  if (name.includes("/")) return path.resolve(name);
  for (const dir of (process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const p = path.join(dir, name);
    if (await access(p).then(() => true, () => false)) return p;
  }
  throw new FailedPrecondition(`"${name}" is not on PATH`);
}

export class OciRuntimes {
  private conmon: Promise<string> | undefined;
  private readonly built = new Map<string, Promise<OciRuntime>>();

  constructor(
    private readonly config: Config,
    private readonly layout: StateLayout,
  ) {}

  /** Finds conmon; a berthd without it cannot create containers, so start-up stops here. */
  async init(): Promise<void> {
    await this.conmonPath();
  }

  private conmonPath(): Promise<string> {
    this.conmon ??= findBinary(this.config.runtime.conmon);
    return this.conmon;
  }

  /** The configured handler names. */
  names(): string[] {
    return Object.keys(this.config.runtime.handlers);
  }

  /** The runtime of `handler` ("" = the default); an unconfigured handler is InvalidArgument. */
  get(handler: string): Promise<OciRuntime> {
    const name = handler || this.config.runtime.default_handler;
    let rt = this.built.get(name);
    if (!rt) {
      const h = this.config.runtime.handlers[name];
      if (!h) {
        return Promise.reject(new InvalidArgument(`runtime handler "${name}" is not configured (known: ${this.names().join(", ")})`));
      }
      const timeoutMs = parseDuration(this.config.runtime.call_timeout);
      rt = (async () => new OciRuntime(name, await findBinary(h.path), this.layout.runtimeRoot(name), this.config.cgroup_driver === "systemd", timeoutMs, await this.conmonPath(), this.layout))();
      // A binary missing now may be installed later: only a runtime that was built stays.
      rt.catch(() => this.built.delete(name));
      this.built.set(name, rt);
    }
    return rt;
  }

  /** The pids conmon wrote at create (0 when a file is missing). */
  async createdPids(id: string): Promise<{ conmonPid: number; pid: number }> {
    const f = this.layout.bundle(id);
    const [conmonPid, pid] = await Promise.all([readPid(f.conmonPidFile), readPid(f.pidFile)]);
    return { conmonPid: conmonPid ?? 0, pid: pid ?? 0 };
  }

  /** The exit conmon recorded; undefined while there is none (or it is still being written). */
  async exitOf(id: string): Promise<ExitRecord | undefined> {
    const file = this.layout.exitFile(id);
    try {
      const [text, st] = await Promise.all([readFile(file, "utf8"), stat(file)]);
      const code = Number.parseInt(text.trim(), 10);
      // Seen between conmon creating the file and writing it: the next event brings the code.
      if (!Number.isInteger(code)) return undefined;
      return { code, finishedAt: BigInt(Math.round(st.mtimeMs * 1000)) * 1000n };
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      return undefined;
    }
  }

  /** True once conmon's exit file exists (even before its code is written). */
  exited(id: string): Promise<boolean> {
    return access(this.layout.exitFile(id)).then(() => true, () => false);
  }

  /** conmon saw the OOM killer end the container. */
  oomRecorded(id: string): Promise<boolean> {
    return access(this.layout.bundle(id).oom).then(() => true, () => false);
  }

  /** True while `pid` is a live conmon (a container's monitor), read from /proc now. */
  async monitorAlive(pid: number): Promise<boolean> {
    return isConmon(pid);
  }

  /**
   * Calls `onGone` once conmon `pid` has exited (watchExit: a pidfd on the event loop); the
   * result cancels the watch. The pidfd is opened before /proc is asked whether `pid` is a live
   * conmon, so the watch is on that conmon, never on a process that reused its pid later.
   * undefined: no live conmon has that pid now (`onGone` is not called).
   */
  watchMonitor(pid: number, onGone: () => void): (() => void) | undefined {
    const cancel = watchExit(pid, onGone);
    if (cancel && !isConmon(pid)) {
      cancel();
      return undefined;
    }
    return cancel;
  }
}
