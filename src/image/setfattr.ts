// The one place berth runs `setfattr` (Debian's attr package): Node has no xattr API.
// Always with -h, so a symlink's own attributes are set and it is never followed.
import { execa } from "execa";

export async function setXattr(file: string, name: string, value: Buffer): Promise<void> {
  const r = await execa("setfattr", ["-h", "-n", name, "-v", `0s${value.toString("base64")}`, "--", file], { reject: false, stdin: "ignore" });
  if (r.exitCode !== 0) throw new Error(`setfattr ${name} on ${file} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`);
}
