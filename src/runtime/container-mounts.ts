// The CRI mounts berth stages on the host before the OCI runtime sees them, under
// <state>/mounts/<container id>/<n>: image volumes (KEP-4639: a read-only overlay of a pulled
// image's layers) and, in a user-namespaced pod, bind mounts whose CRI mount carries the
// pod's uid/gid mappings (an idmapped clone of the host path: runc 1.1 makes none). The spec
// then binds the staged path. Everything here goes with the container, or at start when no
// container record owns it.
import { lstat, mkdir, open, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { FailedPrecondition, InvalidArgument, NotFound, wrap } from "../errors.js";
import { MountPropagation, type Mount } from "../gen/api.js";
import { unmountAllUnder } from "../image/mount.js";
import type { ImageStore, Snapshots } from "../image/types.js";
import { idmapMount } from "../native/native.js";
import type { SandboxRef } from "./types.js";
import { sameMapping, usernsRef } from "./userns.js";

const CONTAINER_ID = /^[0-9a-f]{64}$/;

/** The image a CRI mount names as a volume: the digest kubelet resolved (image_ref) when sent, else the name. */
export function imageVolumeRef(m: Mount): string | undefined {
  const spec = m.image;
  if (!spec || (!spec.image && !spec.imageRef)) return undefined;
  return spec.imageRef || spec.image;
}

/** Request checks of an image volume (no host access): read-only, private, a relative sub path without "..". */
export function checkImageVolume(m: Mount): void {
  const ref = imageVolumeRef(m);
  if (ref === undefined) return;
  if (!m.readonly) throw new InvalidArgument(`mount ${m.containerPath}: image volume ${ref} must be read-only (readonly: true)`);
  if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) throw new InvalidArgument(`mount ${m.containerPath}: image volume ${ref} takes private propagation only`);
  if (m.hostPath) throw new InvalidArgument(`mount ${m.containerPath}: an image volume (${ref}) has no host_path`);
  const sub = m.imageSubPath;
  if (sub && (path.posix.isAbsolute(sub) || sub.split("/").includes("..") || sub.includes("\0"))) {
    throw new InvalidArgument(`mount ${m.containerPath}: image_sub_path "${sub.slice(0, 300)}" must be relative, without ".."`);
  }
}

export interface StagedMounts {
  /** config.mounts with staged sources in place (what the spec binds). */
  mounts: Mount[];
  /** IDs of the images mounted as volumes. */
  imageIds: string[];
}

export class ContainerMounts {
  readonly dir: string;

  constructor(stateDir: string, private readonly images: ImageStore, private readonly snapshots: Snapshots) {
    this.dir = path.join(stateDir, "mounts");
  }

  private containerDir(id: string): string {
    return path.join(this.dir, id);
  }

  /**
   * The image IDs `mounts` name as volumes; NotFound names an image that is not present. Looked
   * up before anything is mounted, so the container can be counted as their user first.
   */
  async resolveImages(mounts: Mount[]): Promise<Map<Mount, string>> {
    const out = new Map<Mount, string>();
    for (const m of mounts) {
      const ref = imageVolumeRef(m);
      if (ref === undefined) continue;
      const image = await this.images.resolve(ref);
      if (!image) throw new NotFound(`mount ${m.containerPath}: image ${ref} (an image volume) not found: pull it first`);
      out.set(m, image.id);
    }
    return out;
  }

  /** Stages the mounts of container `id` that need it; on failure what was staged is removed. */
  async stage(id: string, mounts: Mount[], images: Map<Mount, string>, sandbox: SandboxRef): Promise<StagedMounts> {
    const out: Mount[] = [];
    const base = this.containerDir(id);
    try {
      for (const [i, m] of mounts.entries()) {
        const target = path.join(base, String(i));
        const imageId = images.get(m);
        if (imageId !== undefined) {
          await mkdir(base, { recursive: true, mode: 0o711 });
          await this.snapshots.mountImage(imageId, target, usernsRef(sandbox.userns));
          out.push({ ...m, hostPath: await subPathInside(target, m.imageSubPath), image: undefined, imageSubPath: "", uidMappings: [], gidMappings: [] });
        } else if (m.uidMappings.length > 0 || m.gidMappings.length > 0) {
          out.push({ ...m, hostPath: await this.idmapBind(m, target, sandbox), uidMappings: [], gidMappings: [] });
        } else {
          out.push(m);
        }
      }
    } catch (err) {
      await this.release(id).catch(() => undefined);
      throw err;
    }
    return { mounts: out, imageIds: [...new Set(images.values())] };
  }

  private async idmapBind(m: Mount, target: string, sandbox: SandboxRef): Promise<string> {
    if (!sandbox.userns) throw new InvalidArgument(`mount ${m.containerPath}: uid/gid mappings need a pod with its own user namespace (userns_options.mode POD)`);
    if (!sameMapping(sandbox.userns, m.uidMappings, m.gidMappings)) {
      throw new InvalidArgument(`mount ${m.containerPath}: its uid/gid mappings differ from the pod's user namespace; berth idmaps a mount through the pod's mappings only`);
    }
    const st = await stat(m.hostPath);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o711 });
    if (st.isDirectory()) await mkdir(target, { mode: 0o755 });
    else await (await open(target, "a", 0o644)).close();
    await idmapMount(m.hostPath, target, sandbox.userns.path).catch((err: Error) => {
      throw new FailedPrecondition(`mount ${m.containerPath}: cannot make an idmapped mount of ${m.hostPath} (does its filesystem support idmapped mounts?): ${err.message}`);
    });
    return target;
  }

  /** Unmounts and removes what was staged for container `id`; idempotent. */
  async release(id: string): Promise<void> {
    const base = this.containerDir(id);
    try {
      await unmountAllUnder(base);
    } catch (err) {
      throw wrap(`unmount staged mounts of container ${id}`, err);
    }
    await rm(base, { recursive: true, force: true });
  }

  /**
   * Removes the staged mounts of containers not in `known` (a crash between staging and the
   * record, or before removal ended); entries not named like a container id are left alone.
   */
  async sweep(known: (id: string) => boolean): Promise<string[]> {
    const gone: string[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (known(name) || !CONTAINER_ID.test(name)) continue;
      await this.release(name);
      gone.push(name);
    }
    return gone;
  }
}

/** `sub` inside the mounted volume at `root`, with no component a symlink (nothing leads out of the image). */
async function subPathInside(root: string, sub: string): Promise<string> {
  if (!sub) return root;
  let p = root;
  for (const part of sub.split("/").filter((c) => c !== "" && c !== ".")) {
    p = path.join(p, part);
    const st = await lstat(p).catch(() => undefined);
    if (!st) throw new NotFound(`image_sub_path "${sub}" does not exist in the image`);
    if (st.isSymbolicLink()) throw new InvalidArgument(`image_sub_path "${sub}": ${part} is a symlink; berth does not follow links in an image volume's sub path`);
  }
  return p;
}
