// One pino logger for the daemon: JSON lines on stderr. Secret-bearing fields are
// redacted by path so a registry password or token never reaches a log line.
import { pino, type Logger } from "pino";

export type { Logger };

const REDACT = [
  "auth", "*.auth", "*.*.auth",
  "password", "*.password", "*.*.password",
  "identityToken", "*.identityToken", "*.*.identityToken",
  "registryToken", "*.registryToken", "*.*.registryToken",
  "authorization", "*.authorization", "*.headers.authorization",
  "token", "*.token",
];

export function createLogger(level: string): Logger {
  return pino(
    { level, base: { pid: process.pid }, redact: { paths: REDACT, censor: "[redacted]" } },
    pino.destination({ fd: 2, sync: false }),
  );
}
