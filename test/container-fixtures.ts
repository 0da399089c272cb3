// Fixtures for container tests that drive ContainerManager directly: a busybox rootfs, a plain
// directory-copy image/snapshot pair standing in for the image layer, and a pod whose
// namespaces are pinned with unshare(1) the way the pod layer pins them.
import { execa } from "execa";
import { copyFile, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { NamespaceOption, PodSandboxMetadata } from "../src/gen/api.js";
import type { Image, ImageConfigDocument, ImageStore, Snapshots } from "../src/image/types.js";
import type { SandboxLookup, SandboxRef } from "../src/runtime/types.js";
import { Unimplemented } from "../src/errors.js";

export const PASSWD = `root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
default-user:x:1000:1000::/home/default-user:/bin/sh
`;
export const GROUP = `root:x:0:
www-data:x:33:
nogroup:x:65534:
default-user:x:1000:
group-defined-in-image:x:50000:default-user
`;

/** A busybox-static rootfs with a small /etc/passwd and /etc/group. */
export async function makeBusyboxRootfs(dir: string): Promise<void> {
  for (const d of ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "var/run", "home/default-user"]) await mkdir(path.join(dir, d), { recursive: true });
  await copyFile("/bin/busybox", path.join(dir, "bin/busybox"));
  await execa("chroot", [dir, "/bin/busybox", "--install", "-s", "/bin"]);
  await writeFile(path.join(dir, "etc/passwd"), PASSWD);
  await writeFile(path.join(dir, "etc/group"), GROUP);
  await execa("chmod", ["1777", path.join(dir, "tmp")]);
}

/** Images that are directories (one rootfs each), resolved by name or id. */
export class DirImages implements ImageStore {
  readonly images = new Map<string, { image: Image; rootfs: string }>();
  add(name: string, rootfs: string, config: ImageConfigDocument["config"]): Image {
    const id = "sha256:" + Buffer.from(name).toString("hex").padEnd(64, "0").slice(0, 64);
    const image: Image = { id, repoTags: [name], repoDigests: [], size: 1, config: { config }, chainIds: [], pinned: false };
    this.images.set(name, { image, rootfs });
    this.images.set(id, { image, rootfs });
    return image;
  }
  async resolve(ref: string): Promise<Image | undefined> {
    return this.images.get(ref)?.image;
  }
  async pull(): Promise<Image> {
    throw new Error("DirImages cannot pull");
  }
  async list(): Promise<Image[]> {
    return [...new Set([...this.images.values()].map((v) => v.image))];
  }
  async remove(): Promise<void> {}
  async fsInfo() {
    return { mountpoint: "/", usedBytes: 0, inodesUsed: 0, timestamp: 0n };
  }
}

/** Snapshots as full copies of the image directory (no overlay): enough for lifecycle tests. */
export class CopySnapshots implements Snapshots {
  constructor(private readonly images: DirImages, private readonly dir: string) {}
  async prepare(key: string, imageId: string): Promise<{ rootfs: string }> {
    const src = this.images.images.get(imageId)!.rootfs;
    const rootfs = path.join(this.dir, key);
    await execa("cp", ["-a", src, rootfs]);
    return { rootfs };
  }
  async remove(key: string): Promise<void> {
    await rm(path.join(this.dir, key), { recursive: true, force: true });
  }
  async mountImage(imageId: string): Promise<void> {
    throw new Unimplemented(`CopySnapshots mounts no image volumes (image ${imageId}); the real OverlaySnapshots does`);
  }
  async usage(key: string): Promise<{ bytes: number; inodes: number }> {
    const r = await execa("du", ["-sb", path.join(this.dir, key)]);
    return { bytes: Number(String(r.stdout).split("\t")[0]), inodes: 0 };
  }
  async keys(): Promise<string[]> {
    return readdir(this.dir).catch(() => []);
  }
}

export class Pods implements SandboxLookup {
  readonly pods = new Map<string, SandboxRef>();
  getSandbox(id: string): SandboxRef | undefined {
    return this.pods.get(id);
  }
}

/** A pod with pinned net, ipc and uts namespaces (loopback up), pod files and cgroup parent. */
export async function makePod(dir: string, id: string, over: Partial<SandboxRef> = {}): Promise<{ pod: SandboxRef; cleanup: () => Promise<void> }> {
  const pd = path.join(dir, "pods", id);
  await mkdir(path.join(pd, "shm"), { recursive: true });
  const ns = { net: path.join(pd, "net"), ipc: path.join(pd, "ipc"), uts: path.join(pd, "uts") };
  for (const f of Object.values(ns)) await writeFile(f, "");
  await execa("unshare", [`--net=${ns.net}`, `--ipc=${ns.ipc}`, `--uts=${ns.uts}`, "sh", "-c", `hostname ${id}-host && ip link set lo up`]);
  await writeFile(path.join(pd, "hosts"), `127.0.0.1 localhost\n`);
  await writeFile(path.join(pd, "hostname"), `${id}-host\n`);
  await writeFile(path.join(pd, "resolv.conf"), `nameserver 10.90.0.1\n`);
  const pod: SandboxRef = {
    id,
    metadata: PodSandboxMetadata.fromPartial({ name: `pod-${id}`, namespace: "test", uid: `uid-${id}`, attempt: 0 }),
    state: "ready",
    netnsPath: ns.net,
    ipcnsPath: ns.ipc,
    utsnsPath: ns.uts,
    namespaceOptions: NamespaceOption.fromPartial({ pid: 1 }),
    hostname: `${id}-host`,
    resolvConfPath: path.join(pd, "resolv.conf"),
    hostsPath: path.join(pd, "hosts"),
    hostnamePath: path.join(pd, "hostname"),
    shmPath: path.join(pd, "shm"),
    cgroupParent: `/berth-test-ctr/mgr-${id}`,
    logDirectory: path.join(pd, "logs"),
    runtimeHandler: "runc",
    labels: {},
    annotations: {},
    sysctls: {},
    privileged: false,
    ...over,
  };
  const cleanup = async () => {
    for (const f of Object.values(ns)) await execa("umount", [f], { reject: false });
    for (const c of ["cpu", "cpuacct", "memory", "pids", "cpuset", "devices", "freezer", "blkio", "systemd", "unified"]) {
      await execa("rmdir", [`/sys/fs/cgroup/${c}/berth-test-ctr/mgr-${id}`], { reject: false });
    }
  };
  return { pod, cleanup };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
