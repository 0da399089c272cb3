// Helpers for the pod sandbox tests: a private bridge network per test file, a shell, and
// checks that nothing of a pod is left on the host.
import { execa } from "execa";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { NamespaceMode } from "../src/gen/api.js";

/** Writes <dir>/cni/10-<bridge>.conflist: bridge + host-local (data under <dir>) + portmap. */
export async function writeBridgeConflist(dir: string, bridge: string, subnet: string, extra: object[] = []): Promise<string> {
  await mkdir(path.join(dir, "cni"), { recursive: true });
  const file = path.join(dir, "cni", `10-${bridge}.conflist`);
  await writeFile(file, JSON.stringify({
    cniVersion: "1.0.0",
    name: `${bridge}-net`,
    plugins: [
      {
        type: "bridge", bridge, isGateway: true, ipMasq: true, hairpinMode: true,
        ipam: { type: "host-local", dataDir: path.join(dir, "ipam"), routes: [{ dst: "0.0.0.0/0" }], ranges: [[{ subnet }]] },
      },
      { type: "portmap", capabilities: { portMappings: true } },
      ...extra,
    ],
  }));
  return file;
}

export async function sh(cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await execa(cmd, args, { reject: false, timeout: opts.timeout ?? 20_000, input: opts.input });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** The veth ports attached to a bridge. */
export async function bridgePorts(bridge: string): Promise<string[]> {
  const r = await sh("ip", ["-o", "link", "show", "master", bridge]);
  return r.stdout.split("\n").filter((l) => l.trim()).map((l) => l.split(":")[1]!.trim());
}

/** Mount points under a path, from /proc/self/mountinfo. */
export async function mountsUnder(prefix: string): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text.split("\n").map((l) => l.split(" ")[4] ?? "").filter((t) => t === prefix || t.startsWith(`${prefix}/`));
}

/** Files left in a dir (recursively); [] when the dir is gone. */
export async function filesUnder(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true })).map(String);
  } catch {
    return [];
  }
}

/** iptables rules (nat and filter) that mention any of these ids. */
export async function iptablesRulesFor(ids: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const table of ["nat", "filter"]) {
    const r = await sh("iptables-save", ["-t", table]);
    for (const line of r.stdout.split("\n")) if (ids.some((id) => line.includes(id))) out.push(line);
  }
  return out;
}

export async function deleteBridge(bridge: string): Promise<void> {
  await sh("ip", ["link", "del", bridge]);
}

let seq = 0;
/** A pod config that needs no infra container (per-container PID namespaces). */
export function podConfig(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  seq++;
  const { linux, ...rest } = extra as { linux?: Record<string, unknown> };
  return {
    metadata: { name, namespace: "berth-test", uid: `uid-${name}-${seq}`, attempt: 0 },
    hostname: name,
    labels: { app: name, suite: "sandbox" },
    annotations: { "berth.test/seq": String(seq) },
    linux: {
      ...linux,
      securityContext: {
        namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
        ...((linux?.securityContext as object | undefined) ?? {}),
      },
    },
    ...rest,
  };
}
