// The one place berth makes device nodes and fifos (whiteouts are 0/0 character devices):
// mknod(2) through the native addon, not a forked mknod(1) per entry.
import { constants } from "node:fs";
import { makeNodeAt } from "../native/native.js";

export type NodeKind = "char" | "block" | "fifo";

const TYPE_BITS: Record<NodeKind, number> = { char: constants.S_IFCHR, block: constants.S_IFBLK, fifo: constants.S_IFIFO };

/** Creates a device node or fifo; the caller has checked that no path component is a symlink. */
export async function makeNode(file: string, kind: NodeKind, mode: number, major = 0, minor = 0): Promise<void> {
  try {
    await makeNodeAt(file, TYPE_BITS[kind] | (mode & 0o7777), kind === "fifo" ? 0 : major, kind === "fifo" ? 0 : minor);
  } catch (err) {
    throw new Error(`mknod ${file} failed: ${(err as Error).message}`, { cause: err });
  }
}
