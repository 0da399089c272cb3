// PullImage, ImageStatus, ListImages, RemoveImage, ImageFsInfo: the CRI ImageService over an ImageStore.
import type { Image as CriImage, ImageFilter, ImageSpec } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import type { Image, ImageStore } from "../image/types.js";
import { unary, type ImageHandlers } from "./rpc.js";

/** uid or username from the config's User ("1002", "1003:1004", "www-data", "www-data:1004"). */
export function imageUser(user: string | undefined): { uid?: bigint; username: string } {
  const name = (user ?? "").split(":")[0]!;
  if (name === "") return { username: "" };
  if (/^\d+$/.test(name)) return { uid: BigInt(name), username: "" };
  return { username: name };
}

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Each image's last CRI view, by its config document (one object per stored image, dropped with it). */
const views = new WeakMap<object, { tags: string[]; digests: string[]; size: number; pinned: boolean; view: CriImage }>();

/**
 * An image as the CRI says it: the same object while its names, size and pinning stay the same,
 * so its encoded bytes are reused (list-encoding.ts). Never mutated once handed out.
 */
export function toCri(img: Image): CriImage {
  const m = views.get(img.config);
  if (m && m.size === img.size && m.pinned === img.pinned && sameList(m.tags, img.repoTags) && sameList(m.digests, img.repoDigests)) return m.view;
  const view = buildCri(img);
  views.set(img.config, { tags: [...img.repoTags], digests: [...img.repoDigests], size: img.size, pinned: img.pinned, view });
  return view;
}

function buildCri(img: Image): CriImage {
  const user = imageUser(img.config.config?.User);
  return {
    id: img.id,
    repoTags: img.repoTags,
    repoDigests: img.repoDigests,
    size: BigInt(img.size),
    uid: user.uid !== undefined ? { value: user.uid } : undefined,
    username: user.username,
    spec: { image: img.id, annotations: {}, userSpecifiedImage: "", runtimeHandler: "", imageRef: img.id },
    pinned: img.pinned,
  };
}

/** What ListImages answers (StreamImages sends the same). */
export async function listImages(store: ImageStore, filter: ImageFilter | undefined): Promise<CriImage[]> {
  return (await store.list(filter?.image?.image || undefined, filter?.image?.imageRef || undefined)).map(toCri);
}

/** ImageSpec.image and ImageSpec.image_ref (the ID PullImage returned, looked up first); one of them must be set. */
function requireSpec(spec: ImageSpec | undefined, rpc: string): { image: string; imageRef?: string } {
  if (!spec?.image && !spec?.imageRef) throw new InvalidArgument(`${rpc}: image.image must name an image (a reference or an image ID)`);
  return { image: spec.image, imageRef: spec.imageRef || undefined };
}

export function imageHandlers(store: ImageStore, log: Logger): Pick<ImageHandlers, "pullImage" | "imageStatus" | "listImages" | "removeImage" | "imageFsInfo"> {
  return {
    pullImage: unary(log, "PullImage", async (req) => {
      const ref = req.image?.image;
      if (!ref) throw new InvalidArgument("PullImage: image.image must name the image to pull");
      const a = req.auth;
      const img = await store.pull(ref, a ? {
        username: a.username || undefined,
        password: a.password || undefined,
        auth: a.auth || undefined,
        identityToken: a.identityToken || undefined,
        registryToken: a.registryToken || undefined,
        serverAddress: a.serverAddress || undefined,
      } : undefined);
      return { imageRef: img.id };
    }),

    imageStatus: unary(log, "ImageStatus", async (req) => {
      const spec = requireSpec(req.image, "ImageStatus");
      const img = await store.resolve(spec.image, spec.imageRef);
      if (!img) return { image: undefined, info: {} };
      const info: Record<string, string> = req.verbose
        ? { info: JSON.stringify({ imageSpec: img.config, chainIds: img.chainIds, pinned: img.pinned }) }
        : {};
      return { image: toCri(img), info };
    }),

    listImages: unary(log, "ListImages", async (req) => ({ images: await listImages(store, req.filter) })),

    removeImage: unary(log, "RemoveImage", async (req) => {
      const spec = requireSpec(req.image, "RemoveImage");
      await store.remove(spec.image, spec.imageRef);
      return {};
    }),

    imageFsInfo: unary(log, "ImageFsInfo", async () => {
      const fs = await store.fsInfo();
      const usage = {
        timestamp: fs.timestamp,
        fsId: { mountpoint: fs.mountpoint },
        usedBytes: { value: BigInt(fs.usedBytes) },
        inodesUsed: { value: BigInt(fs.inodesUsed) },
      };
      return { imageFilesystems: [usage], containerFilesystems: [] };
    }),
  };
}
