// The one place berth runs `zstd` (Debian's zstd package): Node 20 has no zstd decoder.
import type { Duplex } from "node:stream";
import { execa } from "execa";

/** A stream that decompresses zstd; errors carry zstd's stderr. */
export function zstdDecompressor(): Duplex {
  return execa("zstd", ["-d", "-c", "-q", "--no-progress"], { stripFinalNewline: true, maxBuffer: { stderr: 64 * 1024 } }).duplex();
}
