// berthd's command line: flags, --help, --version, `berthd config`, then the daemon.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError, configToToml, loadConfig, type ConfigFlags } from "./config.js";
import { startDaemon } from "./daemon.js";
import { causeChain } from "./errors.js";
import { createLogger } from "./log.js";

const HELP = `berthd — a Kubernetes container runtime serving the CRI v1 API

Usage:
  berthd [flags]          serve RuntimeService and ImageService on the socket
  berthd config [flags]   print the effective configuration as TOML
  berthd --version        print the version

Flags:
  --config FILE        main config file (default /etc/berth/berth.toml; drop-ins from berth.d beside it)
  --root DIR           persistent data (images, pod and container metadata)
  --state DIR          volatile state (sockets, runtime state, pid files)
  --socket PATH        the CRI unix socket
  --log-level LEVEL    trace, debug, info, warn, error
  --cni-conf-dir DIR   where the CNI network config is read from
  -h, --help           this text
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
  if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== "config")) {
    process.stderr.write(`berthd: unknown command "${positionals.join(" ")}"\n\n${HELP}`);
    return 2;
  }
  const flags: ConfigFlags = {
    config: values.config,
    root: values.root,
    state: values.state,
    socket: values.socket,
    logLevel: values["log-level"],
    cniConfDir: values["cni-conf-dir"],
  };
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
  if (positionals[0] === "config") {
    process.stdout.write(configToToml(config));
    return 0;
  }
  const log = createLogger(config.log_level);
  let daemon;
  try {
    daemon = await startDaemon(config, log, version);
  } catch (err) {
    log.fatal({ err: causeChain(err) }, "berthd failed to start");
    process.stderr.write(`berthd: ${causeChain(err)}\n`);
    log.flush();
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
  log.flush();
  return 0;
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
