// The benchmark's images, built with the test harness's image builder (test/harness/images.ts)
// from busybox-static and a static pause program, pushed to its local docker-registry:
// a 1-layer busybox, an 8-layer image of 8 MiB random data per layer, a 10-layer image shaped
// like an application image (busybox base, eight data layers, a layer of whiteouts and an opaque
// directory), and the pause image containerd needs for its sandboxes.
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
  /** The 10-layer image, by the registry's own name. */
  layers10: string;
  /** The same image by a docker.io name each runtime maps to the local registry (its mirror settings). */
  layers10Mirrored: string;
  pause: string;
}

/** The repository of the 10-layer image (also under docker.io/, through the mirrors). */
export const LAYERS10_REPO = "bench/layers10";
/** Files the whiteout layer deletes and the directory it makes opaque. */
const WHITEOUTS_PER_LAYER = 3;

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

  // Eight data layers, each with a few small config files; the last layer deletes some of them
  // (whiteouts) and replaces one directory (opaque), as an application image's later steps do.
  const data = Array.from({ length: LAYERS }, (_, i) => ({
    entries: [
      { path: "app/", type: "dir" as const },
      { path: `app/part${i}.bin`, content: randomBytes(LAYER_MIB << 20) },
      { path: `etc/app${i}/`, type: "dir" as const },
      ...Array.from({ length: WHITEOUTS_PER_LAYER + 1 }, (_, k) => ({ path: `etc/app${i}/conf${k}`, content: `layer ${i} file ${k}\n` })),
    ],
  }));
  const whiteouts = {
    entries: [
      ...Array.from({ length: LAYERS }, (_, i) => Array.from({ length: WHITEOUTS_PER_LAYER }, (_, k) => ({ path: `etc/app${i}/.wh.conf${k}`, content: "" }))).flat(),
      { path: "etc/app0/", type: "dir" as const },
      { path: "etc/app0/.wh..wh..opq", content: "" },
      { path: "etc/app0/conf", content: "replaced\n" },
    ],
  };
  const base = { entries: await busyboxEntries(APPLETS) };
  await pushImage(reg, LAYERS10_REPO, { layers: [base, ...data, whiteouts], config: { Env: [PATH_ENV], Cmd: ["sh"] } }, ["1"]);
  return {
    busybox: ref("bench/busybox"),
    layers8: ref("bench/layers8"),
    layers10: ref(LAYERS10_REPO),
    layers10Mirrored: `docker.io/${LAYERS10_REPO}:1`,
    pause: ref("bench/pause"),
  };
}
