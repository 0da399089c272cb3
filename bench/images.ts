// The benchmark's images, built with the test harness's image builder (test/harness/images.ts)
// from busybox-static and a static pause program, pushed to its local docker-registry:
// a 1-layer busybox, an 8-layer image of 8 MiB random data per layer, and the pause image
// containerd needs for its sandboxes.
import { randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { busyboxEntries, pushImage } from "../test/harness/images.js";
import type { TestRegistry } from "../test/harness/registry.js";

export const BENCH_SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bench");

export interface BenchImages {
  busybox: string;
  layers8: string;
  pause: string;
}

export const LAYERS = 8;
export const LAYER_MIB = 8;

const APPLETS = ["sh", "ls", "cat", "echo", "sleep", "id", "top", "true", "env", "hostname", "ip", "ps", "kill"];
const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Compiles bench/pause.c statically (glibc's libc.a from libc6-dev). */
export async function buildPause(out: string): Promise<void> {
  await execa("gcc", ["-static", "-O2", "-s", "-o", out, path.join(BENCH_SRC, "pause.c")]);
}

export async function buildBenchImages(reg: TestRegistry, work: string): Promise<BenchImages> {
  await mkdir(work, { recursive: true });
  const ref = (repo: string) => `${reg.host}/${repo}:1`;

  await pushImage(reg, "bench/busybox", { layers: [{ entries: await busyboxEntries(APPLETS) }], config: { Env: [PATH_ENV], Cmd: ["sh"] } }, ["1"]);

  const pauseBin = path.join(work, "pause");
  await buildPause(pauseBin);
  await pushImage(reg, "bench/pause", {
    layers: [{ entries: [{ path: "pause", content: await readFile(pauseBin), mode: 0o755 }] }],
    config: { Env: [PATH_ENV], Entrypoint: ["/pause"] },
  }, ["1"]);

  const layers = Array.from({ length: LAYERS }, (_, i) => ({
    entries: [{ path: "data/", type: "dir" as const }, { path: `data/layer${i}.bin`, content: randomBytes(LAYER_MIB << 20) }],
  }));
  await pushImage(reg, "bench/layers8", { layers, config: { Env: [PATH_ENV] } }, ["1"]);
  return { busybox: ref("bench/busybox"), layers8: ref("bench/layers8"), pause: ref("bench/pause") };
}
