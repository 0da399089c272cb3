// The one place berth runs `mknod` (coreutils): Node has no mknod or mkfifo.
import { execa } from "execa";

export type NodeKind = "char" | "block" | "fifo";

/** Creates a device node or fifo; the caller has checked that no path component is a symlink. */
export async function makeNode(file: string, kind: NodeKind, mode: number, major = 0, minor = 0): Promise<void> {
  const args = ["-m", (mode & 0o7777).toString(8), "--", file, kind === "char" ? "c" : kind === "block" ? "b" : "p"];
  if (kind !== "fifo") args.push(String(major), String(minor));
  const r = await execa("mknod", args, { reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`mknod ${file} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
}
