// What a runtime handler (an OCI runtime binary on this kernel) can do, for Status's
// runtime_handlers features and for CreateContainer: recursive read-only mounts need the kernel's
// mount_setattr with AT_RECURSIVE (Linux 5.12) and a runtime that knows the "rro" mount option.
import { release } from "node:os";
import { ociRuntimeMountOptions } from "./oci/runc.js";

export interface HandlerFeatures {
  recursiveReadOnlyMounts: boolean;
}

/** True when the kernel release (uname -r) is at least major.minor. */
export function kernelAtLeast(kernelRelease: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernelRelease);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

/** Pure: the features from the kernel release and the runtime's mount options (undefined: it cannot say). */
export function handlerFeatures(kernelRelease: string, mountOptions: readonly string[] | undefined): HandlerFeatures {
  return { recursiveReadOnlyMounts: kernelAtLeast(kernelRelease, 5, 12) && (mountOptions?.includes("rro") ?? false) };
}

const probes = new Map<string, Promise<HandlerFeatures>>();

/** Probes the runtime binary once per berthd (a binary upgrade needs a restart, as a config change does). */
export function probeHandlerFeatures(binary: string): Promise<HandlerFeatures> {
  let p = probes.get(binary);
  if (!p) {
    p = ociRuntimeMountOptions(binary).then((opts) => handlerFeatures(release(), opts), () => handlerFeatures(release(), undefined));
    probes.set(binary, p);
  }
  return p;
}
