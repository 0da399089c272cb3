// The contract between the image layer and its users (the CRI image RPCs, containers, pods).

/** The parts of an OCI image config (`config` object) berth acts on. */
export interface ImageRunConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  StopSignal?: string;
  ExposedPorts?: Record<string, unknown>;
  Volumes?: Record<string, unknown>;
  Labels?: Record<string, string>;
}

/** An OCI image configuration document (application/vnd.oci.image.config.v1+json). */
export interface ImageConfigDocument {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: ImageRunConfig;
  rootfs?: { type: string; diff_ids: string[] };
  history?: unknown[];
  created?: string;
}

export interface Image {
  /**
   * "sha256:" + the config blob's digest: the one ID of this content, whatever names or registries
   * it was pulled under (PullImage's image_ref, Image.id, Container(Status).image_id).
   */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  /** Bytes of the compressed layers plus config (what `crictl images` shows). */
  size: number;
  config: ImageConfigDocument;
  /** Chain IDs of the layers, bottom first: the snapshots a container's rootfs stacks. */
  chainIds: string[];
  pinned: boolean;
}

export interface RegistryAuth {
  username?: string;
  password?: string;
  /** base64 "user:password" */
  auth?: string;
  identityToken?: string;
  registryToken?: string;
  serverAddress?: string;
}

export interface ImageStore {
  /**
   * Finds an image by any reference kubelet uses: name[:tag], name@digest, full or unique short ID.
   * `imageRef` (ImageSpec.image_ref, the ID PullImage returned) is tried first when given.
   */
  resolve(ref: string, imageRef?: string): Promise<Image | undefined>;
  pull(ref: string, auth?: RegistryAuth): Promise<Image>;
  list(filterRef?: string, filterImageRef?: string): Promise<Image[]>;
  /** Removes the image a reference names, with all its tags and digests; an unknown image is no error. */
  remove(ref: string, imageRef?: string): Promise<void>;
  fsInfo(): Promise<{ mountpoint: string; usedBytes: number; inodesUsed: number; timestamp: bigint }>;
}

/** A pinned user namespace to idmap image layers through, and the host ids of its root. */
export interface UsernsRef {
  path: string;
  rootUid: number;
  rootGid: number;
}

/** Writable root filesystems for containers, stacked on an image's layers with overlayfs. */
export interface Snapshots {
  /**
   * Mounts an overlay of the image's layers plus a fresh upper dir for `key` at a path it
   * returns. Idempotent. `userns`: a pinned user namespace the image's layers are idmapped through.
   */
  prepare(key: string, imageId: string, opts?: { userns?: UsernsRef }): Promise<{ rootfs: string }>;
  /** A read-only overlay of the image's layers at `target` (an image volume), idmapped through `userns` when given. */
  mountImage(imageId: string, target: string, userns?: UsernsRef): Promise<void>;
  /** Unmounts and deletes the snapshot `key`; idempotent. */
  remove(key: string): Promise<void>;
  /** Bytes and inodes used by the writable layer of `key`. */
  usage(key: string): Promise<{ bytes: number; inodes: number }>;
  /** Remounts snapshots whose mount is gone (after a host reboot), on daemon start. */
  restore?(key: string, imageId: string): Promise<{ rootfs: string }>;
}
