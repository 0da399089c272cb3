// berthd's command line: flags, --help, --version, `berthd config [--default]`, `berthd doctor`,
// then the daemon (SIGHUP reloads the config, SIGTERM/SIGINT stop it).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError, configToToml, loadConfig, type ConfigFlags } from "./config.js";
import { startDaemon } from "./daemon.js";
import { causeChain } from "./errors.js";
import { defaultConfigToml } from "./config-doc.js";
import { runDoctor } from "./doctor.js";
import { createDaemonLogger, type Logger } from "./log.js";
import { ServiceNotifier } from "./notify.js";
import type { Daemon } from "./daemon.js";

const HELP = `berthd — a Kubernetes container runtime serving the CRI v1 API

Usage:
  berthd [flags]          serve RuntimeService and ImageService on the socket
  berthd config [flags]   print the effective configuration as TOML (--default: the defaults, commented)
  berthd doctor [flags]   check this host can run pods (--json for scripts); exit 0 when it can
  berthd --version        print the version

Flags:
  --config FILE        main config file (default /etc/berth/berth.toml; drop-ins from berth.d beside it)
  --root DIR           persistent data (images, pod and container metadata)
  --state DIR          volatile state (sockets, runtime state, pid files)
  --socket PATH        the CRI unix socket
  --log-level LEVEL    trace, debug, info, warn, error
  --cni-conf-dir DIR   where the CNI network config is read from
  --default            with config: the built-in defaults, each key described (docs/config.md)
  --json               with doctor: one JSON object instead of text
  -h, --help           this text

Signals: SIGHUP re-reads the config files (live keys apply, others are logged as needing a
restart, a broken file keeps the running config); SIGTERM and SIGINT stop berthd.
`;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string" },
        root: { type: "string" },
        state: { type: "string" },
        socket: { type: "string" },
        "log-level": { type: "string" },
        "cni-conf-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
        default: { type: "boolean" },
        json: { type: "boolean" },
      },
    });
  } catch (err) {
    process.stderr.write(`berthd: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const version = packageVersion();
  if (values.version) {
    process.stdout.write(`berthd ${version}\n`);
    return 0;
  }
  const command = positionals[0];
  if (positionals.length > 1 || (command !== undefined && command !== "config" && command !== "doctor")) {
    process.stderr.write(`berthd: unknown command "${positionals.join(" ")}"\n\n${HELP}`);
    return 2;
  }
  if (command === "config" && values.default) {
    process.stdout.write(defaultConfigToml());
    return 0;
  }
  const flags: ConfigFlags = {
    config: values.config,
    root: values.root,
    state: values.state,
    socket: values.socket,
    logLevel: values["log-level"],
    cniConfDir: values["cni-conf-dir"],
  };
  if (command === "doctor") return runDoctor(flags, { json: values.json === true, out: process.stdout });
  let config;
  try {
    ({ config } = await loadConfig(flags));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`berthd: config error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (command === "config") {
    process.stdout.write(configToToml(config));
    return 0;
  }
  const notifier = ServiceNotifier.fromEnvironment();
  let daemonLog;
  try {
    daemonLog = await createDaemonLogger(config);
  } catch (err) {
    process.stderr.write(`berthd: cannot open log_file ${config.log_file}: ${(err as Error).message}\n`);
    return 1;
  }
  const { log } = daemonLog;
  // One reload at a time, in signal order: a slow read must not overwrite a later one. The
  // handler is there from start-up to exit: SIGHUP's default action would kill berthd.
  let daemon: Daemon | undefined;
  let reloading = Promise.resolve();
  process.on("SIGHUP", () => {
    if (!daemon) return void log.warn("SIGHUP while berthd is starting: ignored, send it again once it serves");
    const running = daemon;
    reloading = reloading.then(() => reloadConfig(running, flags, log)).catch((err: unknown) => {
      log.error({ err: causeChain(err) }, "config reload failed");
    });
  });
  try {
    daemon = await startDaemon(config, log, version, notifier);
  } catch (err) {
    log.fatal({ err: causeChain(err) }, "berthd failed to start");
    process.stderr.write(`berthd: ${causeChain(err)}\n`);
    await daemonLog.close();
    return 1;
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, "signal received");
      resolve();
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  });
  await daemon.shutdown();
  await daemonLog.close();
  return 0;
}

/** SIGHUP: the same files and flags as at start, loaded again; a file that does not load changes nothing. */
async function reloadConfig(daemon: Daemon, flags: ConfigFlags, log: Logger): Promise<void> {
  let loaded;
  try {
    loaded = await loadConfig(flags);
  } catch (err) {
    log.error({ err: (err as Error).message }, "config reload failed; the running configuration is kept");
    return;
  }
  const { applied, restart } = daemon.reload(loaded.config);
  log.info({ files: loaded.files, applied }, "config reloaded");
  if (restart.length) log.warn({ keys: restart }, "config keys changed that take effect only after a restart of berthd");
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Child processes and timers that outlive shutdown must not keep the daemon up.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (err: unknown) => {
    process.stderr.write(`berthd: ${causeChain(err)}\n`);
    process.exit(1);
  },
);
