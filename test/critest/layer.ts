// Turns a directory into an image layer: GNU tar (the one place it is spawned here), then gzip and digests.
import { execa } from "execa";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { gzip as gzipCb } from "node:zlib";
import { MEDIA, sha256, type Flavour, type Layer } from "./oci.js";

const gzip = promisify(gzipCb);

/**
 * Packs `dir` with owners as stored on disk (numeric), names sorted and times fixed, so the same tree always
 * gives the same digests. Hard links stay hard links (the busybox applets rely on that). The tar's "./" entry
 * becomes the container's "/", so `dir` is made 0755 first (a mkdtemp dir is 0700).
 */
export async function layerFromDir(dir: string, flavour: Flavour): Promise<Layer> {
  await chmod(dir, 0o755);
  const { stdout } = await execa(
    "tar",
    ["--create", "--sort=name", "--numeric-owner", "--mtime=@0", "--format=gnu", "--directory", dir, "."],
    { encoding: "buffer", maxBuffer: 256 * 1024 * 1024 },
  );
  const tar = Buffer.from(stdout);
  const bytes = await gzip(tar, { level: 6 });
  return { mediaType: MEDIA[flavour].layer, digest: sha256(bytes), diffId: sha256(tar), bytes };
}

/** A layer holding just these files (path inside the image -> content), all root-owned 0644. */
export async function layerFromFiles(files: Record<string, string>, flavour: Flavour, workDir: string): Promise<Layer> {
  const dir = await mkdtemp(path.join(workDir, "layer-"));
  try {
    for (const [name, content] of Object.entries(files)) {
      const file = path.join(dir, name);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content, { mode: 0o644 });
    }
    return await layerFromDir(dir, flavour);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
