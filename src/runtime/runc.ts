// The OCI runtime (runc or a compatible binary): the only module that spawns it.
import { execa } from "execa";

export interface OciRuntimeInfo {
  version: string;
}

/** Runs `<binary> --version`; throws with the program's stderr when it does not run. */
export async function ociRuntimeVersion(binary: string): Promise<OciRuntimeInfo> {
  const r = await execa(binary, ["--version"], { reject: false, timeout: 10_000, stripFinalNewline: true });
  if (r.failed) {
    const why = r.stderr || r.shortMessage || `exit code ${r.exitCode}`;
    throw new Error(`OCI runtime "${binary}" does not run: ${why}`);
  }
  return { version: r.stdout.split("\n")[0] ?? "" };
}
