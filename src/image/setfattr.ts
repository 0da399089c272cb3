// The one place berth sets extended attributes (opaque directories, image xattrs):
// lsetxattr(2) through the native addon, so a symlink's own attributes are set and it is never
// followed, without a forked setfattr(1) per entry.
import { setXattrNoFollow } from "../native/native.js";

export async function setXattr(file: string, name: string, value: Buffer): Promise<void> {
  try {
    await setXattrNoFollow(file, name, value);
  } catch (err) {
    throw new Error(`setfattr ${name} on ${file} failed: ${(err as Error).message}`, { cause: err });
  }
}
