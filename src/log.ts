// One pino logger for the daemon: JSON lines on stderr (the journal under systemd), or in a
// size-rotated file when log_file is set (log-file.ts). Secret-bearing fields are redacted by
// path so a registry password or token never reaches a log line.
import { finished } from "node:stream/promises";
import { pino, type Logger } from "pino";
import { parseSize, type Config } from "./config.js";
import { RotatingFile } from "./log-file.js";

export type { Logger };

const REDACT = [
  "auth", "*.auth", "*.*.auth",
  "password", "*.password", "*.*.password",
  "identityToken", "*.identityToken", "*.*.identityToken",
  "registryToken", "*.registryToken", "*.*.registryToken",
  "authorization", "*.authorization", "*.headers.authorization",
  "token", "*.token",
];

function options(level: string) {
  return { level, base: { pid: process.pid }, redact: { paths: REDACT, censor: "[redacted]" } };
}

export function createLogger(level: string): Logger {
  return pino(options(level), pino.destination({ fd: 2, sync: false }));
}

export interface DaemonLog {
  log: Logger;
  /** Flushes and closes the log's file (when there is one). */
  close(): Promise<void>;
}

/**
 * berthd's logger as its config says. Child loggers share the root's level through their
 * prototype, so `log.level = ...` on a reload reaches every layer's child too.
 */
export async function createDaemonLogger(c: Pick<Config, "log_level" | "log_file" | "log_file_max_size" | "log_file_max_files">): Promise<DaemonLog> {
  if (!c.log_file) {
    const log = createLogger(c.log_level);
    return { log, close: async () => log.flush() };
  }
  const file = await RotatingFile.open(c.log_file, parseSize(c.log_file_max_size), c.log_file_max_files);
  const log = pino(options(c.log_level), file);
  return {
    log,
    close: async () => {
      file.end();
      await finished(file);
    },
  };
}
