// The images critest pulls and runs, rebuilt here from Debian packages and three small C programs
// (programs/*.c), and pushed to the harness's registry under the repository paths the mirrors map to.
import { execa } from "execa";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { layerFromDir } from "./layer.js";
import { imageConfig, imageManifest, manifestList, sha256, type Blob, type Flavour, type ImageSettings, type Layer, type Platform } from "./oci.js";
import { pushBlob, pushManifest } from "./registry.js";
import { buildBusyboxRootfs, GROUP, PASSWD } from "./rootfs.js";

// The C sources stay in test/critest/programs (tsc does not copy them to dist/).
export const PROGRAMS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../test/critest/programs");

const AMD64: Platform = { os: "linux", architecture: "amd64" };
/**
 * The platforms of a manifest list, amd64 not first: a runtime that takes the first entry, or matches on the
 * architecture alone, gets an image whose only file is /PLATFORM and fails to run it.
 */
const LINUX_PLATFORMS: Platform[] = [
  { os: "linux", architecture: "arm64", variant: "v8" },
  AMD64,
  { os: "linux", architecture: "arm", variant: "v7" },
  { os: "linux", architecture: "ppc64le" },
  { os: "linux", architecture: "s390x" },
];
const WITH_WINDOWS: Platform[] = [{ os: "windows", architecture: "amd64" }, ...LINUX_PLATFORMS];

type File = { data: string | Buffer; mode?: number } | { from: string; mode?: number } | { dir: true; mode?: number };
type Tree = Record<string, File>;

export interface ImageSpec {
  /** Full references (registry host, path, tag) that name this image. */
  refs: string[];
  flavour: Flavour;
  /** Layers above the busybox base, or `base: false` for an image without it. */
  base: boolean;
  layers: Tree[];
  settings: ImageSettings;
  /** undefined: one linux/amd64 manifest, no list. */
  platforms?: Platform[];
}

const CRI_TOOLS = "gcr.io/k8s-staging-cri-tools";
const E2E = "registry.k8s.io/e2e-test-images";
const SH: ImageSettings = { cmd: ["sh"] };

const nginxTree = (port: number): Tree => ({
  "usr/sbin/nginx": { from: "webserver", mode: 0o755 },
  "etc/nginx/conf.d/default.conf": { data: `server {\n    listen       ${port};\n    server_name  localhost;\n}\n` },
  "usr/share/nginx/html/index.html": { data: "<html><body><h1>Welcome to nginx!</h1></body></html>\n" },
});
const NGINX: ImageSettings = { cmd: ["nginx", "-g", "daemon off;"], exposedPorts: ["80/tcp"], stopSignal: "SIGQUIT" };
const marker = (name: string): Tree => ({ [name]: { data: "" } });

export const CATALOG: ImageSpec[] = [
  { refs: ["registry.k8s.io/pause:3.10"], flavour: "docker", base: false, layers: [{ pause: { from: "pause", mode: 0o755 } }],
    settings: { entrypoint: ["/pause"], user: "65535:65535" }, platforms: LINUX_PLATFORMS },
  { refs: [`${E2E}/busybox:1.29-2`], flavour: "docker", base: true, layers: [], settings: SH, platforms: WITH_WINDOWS },
  { refs: [`${E2E}/nginx:1.14-2`], flavour: "docker", base: true, layers: [nginxTree(80)], settings: NGINX, platforms: LINUX_PLATFORMS },
  { refs: [`${CRI_TOOLS}/hostnet-nginx-amd64:latest`], flavour: "docker", base: true, layers: [nginxTree(12003)], settings: NGINX },
  { refs: [`${E2E}/httpd:2.4.39-4`], flavour: "docker", base: true,
    layers: [{
      "usr/local/apache2/bin/httpd": { from: "webserver", mode: 0o755 },
      "usr/local/bin/httpd-foreground": { data: "#!/bin/sh\nset -e\nexec httpd -DFOREGROUND \"$@\"\n", mode: 0o755 },
      "usr/local/apache2/htdocs/index.html": { data: "<html><body><h1>It works!</h1></body></html>\n" },
    }],
    settings: { cmd: ["httpd-foreground"], workingDir: "/usr/local/apache2", exposedPorts: ["80/tcp"], stopSignal: "SIGWINCH",
      env: ["PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"] },
    platforms: LINUX_PLATFORMS },
  { refs: [`${E2E}/nonewprivs:1.3`], flavour: "docker", base: true, layers: [{ "usr/local/bin/nnp": { from: "nonewprivs", mode: 0o4755 } }],
    settings: { entrypoint: ["/usr/local/bin/nnp"] }, platforms: LINUX_PLATFORMS },
  // ImageStatus Uid/Username: the same layers, only USER differs.
  ...([["uid", "1002"], ["username", "www-data"], ["uid-group", "1003:1004"], ["username-group", "www-data:1004"]] as const).map(
    ([name, user]): ImageSpec => ({ refs: [`${CRI_TOOLS}/test-image-user-${name}:latest`], flavour: "oci", base: true, layers: [],
      settings: { ...SH, user }, platforms: LINUX_PLATFORMS })),
  { refs: [`${CRI_TOOLS}/test-image-predefined-group:latest`], flavour: "oci", base: true,
    layers: [{
      "etc/passwd": { data: [...PASSWD, "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh"].join("\n") + "\n" },
      "etc/group": { data: [...GROUP, "default-user:x:1000:", "group-defined-in-image:x:50000:default-user"].join("\n") + "\n" },
      "home/default-user": { dir: true, mode: 0o755 },
    }],
    settings: { ...SH, user: "1000" }, platforms: LINUX_PLATFORMS },
  // Image Manager specs: FROM busybox plus one marker file each, as upstream's image-test Dockerfile does.
  ...["test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"].map(
    (name): ImageSpec => ({ refs: [`${CRI_TOOLS}/${name}:latest`], flavour: "docker", base: true, layers: [marker(name)], settings: SH, platforms: LINUX_PLATFORMS })),
  { refs: [1, 2, 3].map((t) => `${CRI_TOOLS}/test-image-tags:${t}`), flavour: "docker", base: true, layers: [marker("same-image")], settings: SH, platforms: LINUX_PLATFORMS },
  { refs: [`${CRI_TOOLS}/test-image-tag:test`], flavour: "oci", base: true, layers: [marker("test")], settings: SH, platforms: LINUX_PLATFORMS },
  { refs: [`${CRI_TOOLS}/test-image-tag:all`], flavour: "oci", base: true, layers: [marker("all")], settings: SH, platforms: LINUX_PLATFORMS },
  // `critest -benchmark` image benchmarks (overridable there; these are its defaults on amd64).
  ...["1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"].map(
    (tag): ImageSpec => ({ refs: [`public.ecr.aws/docker/library/busybox:${tag}`], flavour: "docker", base: true, layers: [marker(`busybox-${tag}`)], settings: SH, platforms: LINUX_PLATFORMS })),
];

/** The registries whose names the catalog uses: the runtime under test sends each to the harness's registry. */
export const MIRRORED_REGISTRIES = ["registry.k8s.io", "gcr.io", "docker.io", "public.ecr.aws"];

/** Splits "host/path:tag" into the repository path the mirror serves and the tag. */
export function mirrorPath(ref: string): { repo: string; tag: string } {
  const m = ref.match(/^([^/]+)\/(.+):([\w][\w.-]*)$/);
  if (!m) throw new Error(`not a host/path:tag reference: ${ref}`);
  return { repo: m[1] === "docker.io" && !m[2]!.includes("/") ? `library/${m[2]}` : m[2]!, tag: m[3]! };
}

async function compilePrograms(outDir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of ["webserver", "pause", "nonewprivs"]) {
    const bin = path.join(outDir, name);
    const res = await execa("gcc", ["-static", "-O2", "-Wall", "-o", bin, path.join(PROGRAMS_DIR, `${name}.c`)], { reject: false });
    if (res.exitCode !== 0) throw new Error(`gcc ${name}.c failed (needs gcc and libc6-dev): ${res.stderr}`);
    out[name] = bin;
  }
  return out;
}

async function writeTree(dir: string, tree: Tree, programs: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, f] of Object.entries(tree)) {
    const dest = path.join(dir, name);
    await mkdir(path.dirname(dest), { recursive: true });
    if ("dir" in f) await mkdir(dest, { recursive: true });
    else if ("from" in f) await execa("cp", [programs[f.from] ?? f.from, dest]);
    else await writeFile(dest, f.data);
    await chmod(dest, f.mode ?? ("dir" in f ? 0o755 : 0o644)); // chmod: a umask never strips setuid or x bits here
  }
}

export interface BuiltImage {
  refs: string[];
  /** What the tag points at: a manifest list, or one manifest. */
  top: Blob;
  /** The linux/amd64 manifest and config (the image the runtime should pick). */
  manifest: Blob;
  config: Blob;
}

/** Builds every catalog image in `workDir` and pushes it to the registry at `address`. */
export async function buildAndPush(address: string, workDir: string, log: (line: string) => void = () => {}): Promise<BuiltImage[]> {
  const programs = await compilePrograms(await mkdirp(path.join(workDir, "programs")));
  const rootfs = path.join(workDir, "busybox-rootfs");
  await buildBusyboxRootfs(rootfs, workDir);
  const layerCache = new Map<string, Layer>();
  const layerOf = async (key: string, flavour: Flavour, make: (dir: string) => Promise<void>): Promise<Layer> => {
    const k = `${flavour}:${key}`;
    if (!layerCache.has(k)) {
      const dir = path.join(workDir, "layers", sha256(k).slice(7, 23));
      await make(dir);
      layerCache.set(k, await layerFromDir(dir, flavour));
    }
    return layerCache.get(k)!;
  };
  const base = (flavour: Flavour) => layerOf("busybox-base", flavour, async (dir) => { await execa("cp", ["-a", rootfs, dir]); });
  const built: BuiltImage[] = [];
  for (const spec of CATALOG) {
    const { repo } = mirrorPath(spec.refs[0]!);
    const layers: Layer[] = spec.base ? [await base(spec.flavour)] : [];
    for (const tree of spec.layers) {
      layers.push(await layerOf(JSON.stringify(tree), spec.flavour, (dir) => writeTree(dir, tree, programs)));
    }
    const entries: Array<{ manifest: Blob; platform: Platform; config: Blob }> = [];
    for (const platform of spec.platforms ?? [AMD64]) {
      const native = platform.os === AMD64.os && platform.architecture === AMD64.architecture;
      const platformLayers = native ? layers : [await layerOf(`platform-${platform.os}-${platform.architecture}-${platform.variant ?? ""}`, spec.flavour,
        (dir) => writeTree(dir, { PLATFORM: { data: `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ""}\n` } }, programs))];
      const config = imageConfig(spec.flavour, platform, platformLayers, spec.settings);
      const manifest = imageManifest(spec.flavour, config, platformLayers);
      for (const l of platformLayers) await pushBlob(address, repo, l);
      await pushBlob(address, repo, config);
      await pushManifest(address, repo, manifest.digest, manifest);
      entries.push({ manifest, platform, config });
    }
    const top = spec.platforms ? manifestList(spec.flavour, entries) : entries[0]!.manifest;
    for (const ref of spec.refs) {
      const { repo: r, tag } = mirrorPath(ref);
      if (r !== repo) throw new Error(`catalog entry mixes repositories: ${spec.refs.join(", ")}`);
      await pushManifest(address, repo, tag, top);
    }
    const amd64 = entries.find((e) => e.platform === AMD64)!;
    built.push({ refs: spec.refs, top, manifest: amd64.manifest, config: amd64.config });
    log(`pushed ${spec.refs.join(", ")} ${top.digest}`);
  }
  return built;
}

async function mkdirp(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}
