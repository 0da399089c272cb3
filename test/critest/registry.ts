// Debian's docker-registry on 127.0.0.1 (a free port, storage in a temp dir) and a push client for its HTTP API.
import { spawn, type ChildProcess } from "node:child_process";
import { open, writeFile } from "node:fs/promises";
import path from "node:path";
import { type Blob } from "./oci.js";
import { freePort, waitFor } from "./host.js";

export const REGISTRY_BIN = "/usr/bin/docker-registry";

export interface Registry {
  /** host:port */
  address: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startRegistry(workDir: string): Promise<Registry> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const configFile = path.join(workDir, "registry.yml");
  await writeFile(
    configFile,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${path.join(workDir, "registry")}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${address}`,
      "",
    ].join("\n"),
  );
  const log = await open(path.join(workDir, "registry.log"), "a");
  const proc = spawn(REGISTRY_BIN, ["serve", configFile], { stdio: ["ignore", log.fd, log.fd] });
  let exited = false;
  const done = new Promise<void>((resolve) => proc.once("exit", () => { exited = true; resolve(); }));
  await waitFor(`docker-registry on ${address}`, async () => {
    if (exited) throw new Error(`docker-registry exited; see ${path.join(workDir, "registry.log")}`);
    const res = await fetch(`http://${address}/v2/`);
    return res.status === 200;
  }, 20_000).catch(async (err) => {
    proc.kill("SIGKILL");
    await log.close();
    throw err;
  });
  return {
    address,
    proc,
    stop: async () => {
      if (!exited) proc.kill("SIGTERM");
      await done;
      await log.close();
    },
  };
}

async function check(res: Response, what: string): Promise<void> {
  if (res.ok) return;
  throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

/** Uploads a blob unless the repository has it already (monolithic upload: POST then PUT with the digest). */
export async function pushBlob(address: string, repo: string, b: Blob): Promise<void> {
  const base = `http://${address}/v2/${repo}/blobs`;
  if ((await fetch(`${base}/${b.digest}`, { method: "HEAD" })).status === 200) return;
  const start = await fetch(`${base}/uploads/`, { method: "POST" });
  await check(start, `start upload of ${b.digest} to ${repo}`);
  const location = new URL(start.headers.get("location")!, `http://${address}`);
  location.searchParams.set("digest", b.digest);
  const put = await fetch(location, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream", "content-length": String(b.bytes.length) },
    body: b.bytes,
  });
  await check(put, `upload ${b.digest} to ${repo}`);
}

/** Stores a manifest or manifest list under a tag or its digest. */
export async function pushManifest(address: string, repo: string, reference: string, m: Blob): Promise<void> {
  const res = await fetch(`http://${address}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": m.mediaType },
    body: m.bytes,
  });
  await check(res, `put manifest ${repo}:${reference}`);
  const digest = res.headers.get("docker-content-digest");
  if (digest && digest !== m.digest) throw new Error(`registry stored ${repo}:${reference} as ${digest}, expected ${m.digest}`);
}
