// Mounting and unmounting through the native addon's mount(2) and umount2(2) (no mount(8)
// process per container): overlay snapshots here, and the one mountinfo reader and unmount
// the pod code (src/runtime/namespaces.ts) uses too.
import { readFile } from "node:fs/promises";
import { mountFs, MS, unmountFs } from "../native/native.js";

export interface OverlayMount {
  /** Lower directories, top first, relative to `cwd` so 100+ layers fit in one page of options. */
  lower: string[];
  cwd: string;
  /** No upper (and work) dir: a read-only overlay of the lowers (an image volume). */
  upper?: string;
  work?: string;
  target: string;
}

/** The option string for an overlay; exported for its length check. */
export function overlayOptions(m: OverlayMount): string {
  const upper = m.upper === undefined ? "" : `,upperdir=${m.upper},workdir=${m.work}`;
  return `lowerdir=${m.lower.join(":")}${upper},index=off`;
}

export const MAX_MOUNT_OPTIONS = 4095;

export async function mountOverlay(m: OverlayMount): Promise<void> {
  const options = overlayOptions(m);
  if (options.length > MAX_MOUNT_OPTIONS) throw new Error(`overlay options for ${m.target} are ${options.length} bytes, over the ${MAX_MOUNT_OPTIONS}-byte limit`);
  await mountFs({ source: "overlay", target: m.target, fstype: "overlay", flags: m.upper === undefined ? MS.RDONLY : 0, data: options, cwd: m.cwd }).catch((err: Error) => {
    throw new Error(`mount overlay on ${m.target} failed: ${err.message}`, { cause: err });
  });
}

/** Unmounts `target`, lazily if it is busy; fine when it is not mounted or does not exist. */
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

function decodeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Unmounts every mount at or under `dir`, deepest first (never removing a dir with a mount inside). */
export async function unmountAllUnder(dir: string): Promise<void> {
  const targets = (await mountsUnder(dir)).map((m) => m.target).sort((a, b) => b.length - a.length);
  for (const t of targets) await unmount(t);
}

/** The mount points (with their fs type) at or under `prefix`, from /proc/self/mountinfo. */
export async function mountsUnder(prefix: string): Promise<Array<{ target: string; fstype: string }>> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const out: Array<{ target: string; fstype: string }> = [];
  for (const line of text.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const target = decodeMountPath(left.split(" ")[4] ?? "");
    if (target === prefix || target.startsWith(prefix.endsWith("/") ? prefix : `${prefix}/`)) out.push({ target, fstype: right.split(" ")[0] ?? "" });
  }
  return out;
}

export async function isMountpoint(target: string): Promise<boolean> {
  return (await mountsUnder(target)).some((m) => m.target === target);
}
