// The one place berth mounts and unmounts image snapshots (mount(2) and umount2(2) through
// the native addon: no mount(8) process per container).
import { readFile } from "node:fs/promises";
import { mountFs, unmountFs } from "../native/native.js";

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
  await mountFs({ source: "overlay", target: m.target, fstype: "overlay", data: options, cwd: m.cwd }).catch((err: Error) => {
    throw new Error(`mount overlay on ${m.target} failed: ${err.message}`, { cause: err });
  });
}

export async function unmount(target: string): Promise<void> {
  try {
    await unmountFs(target);
  } catch (err) {
    // Not mounted (EINVAL) or gone: nothing to do.
    if (!(await isMountpoint(target))) return;
    // Busy mounts (a process still inside) are detached lazily rather than left behind.
    await unmountFs(target, true).catch((lazy: Error) => {
      throw new Error(`umount ${target} failed: ${(err as Error).message}; lazy: ${lazy.message}`, { cause: lazy });
    });
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
