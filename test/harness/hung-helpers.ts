// Helpers that hang, for the hung-runtime and hung-CNI-plugin faults: an OCI runtime handler
// that is runc except that `create` sleeps, and a chained CNI plugin that sleeps in ADD for
// pods named hang-*. Both sleep in a child (`sleep`), so a kill must reach the process group.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { sh } from "../sandbox-net.js";

/** Unusual sleep lengths: `pgrep -f "^sleep <n>$"` finds what a kill missed, and nothing else. */
export const HUNG_RUNTIME_SLEEP = 86413;
export const HUNG_PLUGIN_SLEEP = 86414;
/** The CNI plugin's type, and the pod-name prefix it hangs for. */
export const HUNG_PLUGIN = "berth-hang";
export const HANG_POD_PREFIX = "hang-";

/**
 * Writes <binDir>/hang-runc (the runtime; its `create` writes its pid to `pidFile` and sleeps)
 * and <binDir>/berth-hang (the plugin); returns the runtime's path.
 */
export async function writeHungHelpers(binDir: string, pidFile: string): Promise<string> {
  await mkdir(binDir, { recursive: true });
  const runc = (await sh("sh", ["-c", "command -v runc"])).stdout.trim();
  const runtime = path.join(binDir, "hang-runc");
  await writeFile(runtime, `#!/bin/sh
for a in "$@"; do
  if [ "$a" = create ]; then echo $$ > ${pidFile}; sleep ${HUNG_RUNTIME_SLEEP}; fi
done
exec ${runc} "$@"
`);
  await writeFile(path.join(binDir, HUNG_PLUGIN), `#!/bin/sh
in=$(cat)
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
ADD)
  case "$CNI_ARGS" in *K8S_POD_NAME=${HANG_POD_PREFIX}*) sleep ${HUNG_PLUGIN_SLEEP} ;; esac
  printf '%s' "$in" | jq -c .prevResult ;;
esac
`);
  await chmod(runtime, 0o755);
  await chmod(path.join(binDir, HUNG_PLUGIN), 0o755);
  return runtime;
}

/** Processes of the hung helpers that are still there (a kill that missed them). */
export async function hungSleepers(): Promise<string[]> {
  const out: string[] = [];
  for (const n of [HUNG_RUNTIME_SLEEP, HUNG_PLUGIN_SLEEP]) {
    const r = await sh("pgrep", ["-a", "-f", `^sleep ${n}$`]);
    out.push(...r.stdout.split("\n").filter((l) => l.trim()));
  }
  return out;
}
