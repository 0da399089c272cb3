// The benchmark's images, built from busybox-static and a static pause program, pushed to the
// local registry: a 1-layer busybox, an 8-layer image of 8 MiB random data per layer, and the
// pause image containerd needs for its sandboxes.
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { pushImage } from "./registry.js";

export const BENCH_SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bench");

export interface BenchImages {
  busybox: string;
  layers8: string;
  pause: string;
}

export const LAYERS = 8;
export const LAYER_MIB = 8;

async function busyboxTree(dir: string): Promise<void> {
  await mkdir(path.join(dir, "bin"), { recursive: true });
  for (const d of ["etc", "tmp", "proc", "sys", "dev", "root", "var"]) await mkdir(path.join(dir, d), { recursive: true });
  await copyFile("/bin/busybox", path.join(dir, "bin/busybox"));
  await chmod(path.join(dir, "bin/busybox"), 0o755);
  const { stdout } = await execa("/bin/busybox", ["--list"]);
  for (const applet of stdout.split("\n").map((s) => s.trim()).filter((s) => s && s !== "busybox")) {
    await symlink("busybox", path.join(dir, "bin", applet)).catch(() => undefined);
  }
  await writeFile(path.join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  await writeFile(path.join(dir, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
}

/** Compiles bench/pause.c statically (glibc's libc.a from libc6-dev). */
export async function buildPause(out: string): Promise<void> {
  await execa("gcc", ["-static", "-O2", "-s", "-o", out, path.join(BENCH_SRC, "pause.c")]);
}

export async function buildBenchImages(host: string, work: string): Promise<BenchImages> {
  const bb = path.join(work, "busybox");
  await busyboxTree(bb);
  const busybox = await pushImage(host, { repo: "bench/busybox", tag: "1", layers: [{ dir: bb }], cmd: ["sh"] });

  const pauseDir = path.join(work, "pause");
  await mkdir(pauseDir, { recursive: true });
  await buildPause(path.join(pauseDir, "pause"));
  const pause = await pushImage(host, { repo: "bench/pause", tag: "1", layers: [{ dir: pauseDir }], entrypoint: ["/pause"] });

  const layerDirs = [];
  for (let i = 0; i < LAYERS; i++) {
    const dir = path.join(work, `layer${i}`);
    await mkdir(path.join(dir, "data"), { recursive: true });
    await writeFile(path.join(dir, "data", `layer${i}.bin`), randomBytes(LAYER_MIB << 20));
    layerDirs.push({ dir });
  }
  const layers8 = await pushImage(host, { repo: "bench/layers8", tag: "1", layers: layerDirs, cmd: ["/data/layer0.bin"] });
  return { busybox, layers8, pause };
}
