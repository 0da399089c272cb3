// One OCI runtime per RuntimeClass handler: the only object that runs runc and conmon. Create
// goes through conmon (which runs `runc create` and stays as the container's monitor), start,
// kill, delete, state and update are runc calls, exec is `runc exec` (collected for ExecSync,
// wired to a session for streaming), attach, resize and log reopen go to conmon's socket and
// control fifo. What conmon records of an exit (the same for every handler) is read by
// OciRuntimes (runtimes.ts).
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { wrap } from "../../errors.js";
import type { BundleFiles, StateLayout } from "../../layout.js";
import type { Logger } from "../../log.js";
import type { StreamIO } from "../stream-io.js";
import type { OciProcess, OciResources } from "../spec.js";
import { attachConmon } from "./attach.js";
import { reopenLog, resizeTerminal, startConmon, type ConmonStarted } from "./conmon.js";
import { runWired } from "./exec-stream.js";
import { execProcess, Runc, type ExecSyncOutput, type RuncState } from "./runc.js";

export interface CreateOptions {
  id: string;
  /** The container's name as conmon logs it. */
  name: string;
  /** The CRI log file conmon writes. */
  logPath: string;
  stdin: boolean;
  stdinOnce: boolean;
  terminal: boolean;
}

export interface ExecSyncLimits {
  /** 0 = none. At the deadline the process's group is SIGKILLed. */
  timeoutMs: number;
  /** Bytes kept per stream. */
  outputCap: number;
  /** How long, after the process exited, its output is still read while something holds it open. */
  drainGraceMs: number;
}

export class OciRuntime {
  private readonly runc: Runc;

  constructor(
    /** The handler's name in the config. */
    readonly handler: string,
    binary: string,
    root: string,
    systemdCgroup: boolean,
    /** runtime.call_timeout: a runc call (or conmon's create) that takes longer is killed: DEADLINE_EXCEEDED. */
    readonly timeoutMs: number,
    private readonly conmon: string,
    private readonly layout: StateLayout,
  ) {
    this.runc = new Runc(binary, root, systemdCgroup, timeoutMs);
  }

  /** The runtime binary's absolute path. */
  get binary(): string {
    return this.runc.binary;
  }

  /** Its state root (--root). */
  get root(): string {
    return this.runc.root;
  }

  files(id: string): BundleFiles {
    return this.layout.bundle(id);
  }

  /** conmon runs `runc create` from the bundle's config.json; resolves once the container's init exists. */
  async create(o: CreateOptions): Promise<ConmonStarted> {
    const f = this.files(o.id);
    return startConmon({
      conmon: this.conmon,
      runtimePath: this.runc.binary,
      runtimeArgs: this.runc.globalArgs(),
      systemdCgroup: this.runc.systemdCgroup,
      id: o.id,
      name: o.name,
      bundle: f.dir,
      containerPidFile: f.pidFile,
      conmonPidFile: f.conmonPidFile,
      logPath: o.logPath,
      exitDir: this.layout.exits,
      socketDir: this.layout.sockets,
      stdin: o.stdin,
      stdinOnce: o.stdinOnce,
      terminal: o.terminal,
      logLevel: "info",
      conmonLogFile: f.conmonLog,
      timeoutMs: this.timeoutMs,
    });
  }

  start(id: string): Promise<void> {
    return this.runc.start(id);
  }

  /** `all` reaches every process of the container's cgroup; a missing or stopped container is no error. */
  kill(id: string, signal: string, all = false): Promise<void> {
    return this.runc.kill(id, signal, all);
  }

  /** Idempotent; `force` kills a live container first. */
  delete(id: string, force = true): Promise<void> {
    return this.runc.delete(id, force);
  }

  /** undefined when the runtime does not know the container. */
  state(id: string): Promise<RuncState | undefined> {
    return this.runc.state(id);
  }

  update(id: string, resources: Omit<OciResources, "devices">): Promise<void> {
    return this.runc.update(id, resources);
  }

  /** Runs `cmd` with the container's process settings and collects its output (ExecSync). */
  async execSync(id: string, base: OciProcess, cmd: string[], limits: ExecSyncLimits, log: Logger): Promise<ExecSyncOutput> {
    // The process spec and the pid file sit in the bundle under a fresh name; they go once the answer is on its way.
    const stem = path.join(this.files(id).dir, `exec-${randomBytes(6).toString("hex")}`);
    const processFile = `${stem}.json`;
    const pidFile = `${stem}.pid`;
    try {
      await writeFile(processFile, JSON.stringify(execProcess(base, cmd)), { mode: 0o600 });
      return await this.runc.execSync(id, { processFile, pidFile, ...limits });
    } finally {
      void Promise.all([rm(processFile, { force: true }), rm(pidFile, { force: true })]).catch((err: unknown) =>
        log.warn({ id, err: String(err) }, "removing an exec's process file"));
    }
  }

  /** Runs `cmd` wired to a streaming session (a pty berthd holds when io.tty); resolves with its exit status. */
  async exec(id: string, base: OciProcess, cmd: string[], io: StreamIO, log: Logger): Promise<number> {
    await mkdir(this.layout.execs, { recursive: true, mode: 0o700 });
    const stem = path.join(this.layout.execs, `${id.slice(0, 12)}-${randomBytes(6).toString("hex")}`);
    const pidFile = `${stem}.pid`;
    const processFile = `${stem}.json`;
    try {
      await writeFile(processFile, JSON.stringify(execProcess(base, cmd, io.tty, io.resize.latest)), { mode: 0o600 });
      const kill = async () => {
        // runc writes the pid file once the process exists; a client gone sooner waits for it.
        let pid = NaN;
        for (let i = 0; i < 50 && !(pid > 1); i++) {
          pid = Number.parseInt(await readFile(pidFile, "utf8").catch(() => ""), 10);
          if (!(pid > 1)) await new Promise((r) => setTimeout(r, 100));
        }
        if (!Number.isInteger(pid) || pid <= 1) return;
        // With a tty the process leads its own session and group: take the whole group.
        if (io.tty) {
          try { process.kill(-pid, "SIGKILL"); } catch { /* already gone */ }
        }
        try { process.kill(pid, "SIGKILL"); } catch { /* already gone */ }
      };
      return await runWired({ file: this.runc.binary, args: this.runc.execArgs(id, processFile, pidFile), kill }, io, log);
    } finally {
      await rm(pidFile, { force: true });
      await rm(processFile, { force: true });
    }
  }

  /** Relays the container's own stdio through conmon until either side goes. */
  attach(c: { id: string; tty: boolean; stdinOnce: boolean }, io: StreamIO, log: Logger): Promise<void> {
    // conmon binds the socket through a link (<sockets>/<id>, cut one character short when it
    // would be 107 long) to the bundle: the bundle path is the one that always holds.
    const f = this.files(c.id);
    return attachConmon({ ...c, socket: f.attach, ctl: f.ctl }, io, log);
  }

  resize(id: string, height: number, width: number): Promise<void> {
    return resizeTerminal(this.files(id).ctl, height, width);
  }

  /** Asks conmon to reopen the CRI log (after kubelet rotated it). */
  async reopenLog(id: string): Promise<void> {
    await reopenLog(this.files(id).ctl).catch((err) => {
      throw wrap(`reopen log of container ${id}`, err);
    });
  }

}
