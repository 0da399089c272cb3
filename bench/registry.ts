// A local docker-registry on 127.0.0.1 for the benchmark, and a push of OCI images built from
// directories. Interim: replaced by test/harness/registry.ts + images.ts once those land on main.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, open, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { execa } from "execa";

export interface Registry {
  /** host:port, e.g. 127.0.0.1:40123 */
  host: string;
  pid: number;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export async function startRegistry(dir: string): Promise<Registry> {
  await mkdir(path.join(dir, "storage"), { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = path.join(dir, "config.yml");
  await writeFile(config, [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${path.join(dir, "storage")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}`,
    "",
  ].join("\n"));
  const log = await open(path.join(dir, "registry.log"), "a");
  // Own process group: a terminal's Ctrl-C reaches only the harness, which stops this itself.
  const proc: ChildProcess = spawn("docker-registry", ["serve", config], { stdio: ["ignore", log.fd, log.fd], detached: true });
  await log.close();
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const until = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited (${proc.exitCode}); see ${dir}/registry.log`);
    const ok = await fetch(`http://${host}/v2/`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > until) {
      proc.kill("SIGKILL");
      throw new Error(`docker-registry did not answer on ${host} within 15s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    host,
    pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}

export interface LayerDir {
  /** A directory whose contents become one layer (archived as root:root). */
  dir: string;
}

export interface ImageSpec {
  repo: string;
  tag: string;
  layers: LayerDir[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
}

function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function pushBlob(host: string, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const head = await fetch(`http://${host}/v2/${repo}/blobs/${digest}`, { method: "HEAD" });
  if (head.ok) return digest;
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`blob upload start for ${repo}: HTTP ${start.status}`);
  const loc = new URL(start.headers.get("location")!, `http://${host}`);
  loc.searchParams.set("digest", digest);
  const put = await fetch(loc, { method: "PUT", body: data, headers: { "content-type": "application/octet-stream" } });
  if (put.status !== 201) throw new Error(`blob upload ${digest} to ${repo}: HTTP ${put.status} ${await put.text()}`);
  return digest;
}

/** Archives each layer dir with tar, gzips it, pushes blobs, config and an OCI manifest. */
export async function pushImage(host: string, spec: ImageSpec): Promise<string> {
  const layers: Array<{ digest: string; size: number; diffId: string }> = [];
  for (const l of spec.layers) {
    const { stdout: tar } = await execa("tar", ["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C", l.dir, "-cf", "-", "."], { encoding: "buffer", maxBuffer: 1 << 30 });
    const raw = Buffer.from(tar);
    const gz = gzipSync(raw, { level: 1 });
    layers.push({ digest: await pushBlob(host, spec.repo, gz), size: gz.length, diffId: sha256(raw) });
  }
  const config = Buffer.from(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: {
      Env: spec.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
      ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
  }));
  const configDigest = await pushBlob(host, spec.repo, config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: l.digest, size: l.size })),
  });
  const res = await fetch(`http://${host}/v2/${spec.repo}/manifests/${spec.tag}`, {
    method: "PUT",
    body: manifest,
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  if (res.status !== 201) throw new Error(`manifest push ${spec.repo}:${spec.tag}: HTTP ${res.status} ${await res.text()}`);
  return `${host}/${spec.repo}:${spec.tag}`;
}
