// The one place berth runs `mount` and `umount` (util-linux) for image snapshots.
import { readFile } from "node:fs/promises";
import { execa } from "execa";

export interface OverlayMount {
  /** Lower directories, top first, relative to `cwd` so 100+ layers fit in one page of options. */
  lower: string[];
  cwd: string;
  upper: string;
  work: string;
  target: string;
}

/** The option string for an overlay; exported for its length check. */
export function overlayOptions(m: OverlayMount): string {
  return `lowerdir=${m.lower.join(":")},upperdir=${m.upper},workdir=${m.work},index=off`;
}

export const MAX_MOUNT_OPTIONS = 4095;

export async function mountOverlay(m: OverlayMount): Promise<void> {
  const options = overlayOptions(m);
  if (options.length > MAX_MOUNT_OPTIONS) throw new Error(`overlay options for ${m.target} are ${options.length} bytes, over the ${MAX_MOUNT_OPTIONS}-byte limit`);
  const r = await execa("mount", ["-t", "overlay", "overlay", "-o", options, m.target], { cwd: m.cwd, reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`mount overlay on ${m.target} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
}

export async function unmount(target: string): Promise<void> {
  const r = await execa("umount", [target], { reject: false, stdin: "ignore" });
  if (r.exitCode !== 0 && (await isMountpoint(target))) {
    // Busy mounts (a process still inside) are detached lazily rather than left behind.
    const lazy = await execa("umount", ["-l", target], { reject: false, stdin: "ignore" });
    if (lazy.exitCode !== 0) throw new Error(`umount ${target} failed: ${String(r.stderr).trim()}; lazy: ${String(lazy.stderr).trim()}`);
  }
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export async function isMountpoint(target: string): Promise<boolean> {
  const info = await readFile("/proc/self/mountinfo", "utf8");
  for (const line of info.split("\n")) {
    const f = line.split(" ");
    if (f.length > 4 && unescapeMountinfo(f[4]!) === target) return true;
  }
  return false;
}
