// The busybox userland every critest image starts from, assembled from Debian packages on this machine.
// Debian's dynamic `busybox` (not busybox-static: its shell runs applets internally, so a masked /bin/ls would
// still run) with its applets as hard links in /bin, plus pgrep (procps) and ipcs (util-linux), which that
// busybox lacks, each with the shared libraries ldd names.
import { execa } from "execa";
import { chmod, copyFile, link, mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";

/** Host programs added to /bin, for the applets Debian's busybox is built without. */
const HOST_PROGRAMS = ["/usr/bin/pgrep", "/usr/bin/ipcs"];

export const PASSWD = [
  "root:x:0:0:root:/root:/bin/sh",
  "daemon:x:1:1:daemon:/usr/sbin:/bin/false",
  "bin:x:2:2:bin:/bin:/bin/false",
  "sys:x:3:3:sys:/dev:/bin/false",
  "sync:x:4:100:sync:/bin:/bin/sync",
  "mail:x:8:8:mail:/var/spool/mail:/bin/false",
  "www-data:x:33:33:www-data:/var/www:/bin/false",
  "operator:x:37:37:Operator:/var:/bin/false",
  "nobody:x:65534:65534:nobody:/home:/bin/false",
];
export const GROUP = [
  "root:x:0:",
  "daemon:x:1:",
  "bin:x:2:",
  "sys:x:3:",
  "adm:x:4:",
  "tty:x:5:",
  "disk:x:6:",
  "wheel:x:10:root",
  "mail:x:12:",
  "www-data:x:33:",
  "operator:x:37:",
  "users:x:100:",
  "nogroup:x:65534:",
];

/** Downloads Debian's busybox .deb into `dir` (apt-get update once if the lists lack it) and returns its path. */
async function downloadBusybox(dir: string): Promise<string> {
  const download = () => execa("apt-get", ["download", "-q", "busybox"], { cwd: dir, reject: false });
  let res = await download();
  if (res.exitCode !== 0) {
    await execa("apt-get", ["update", "-qq"]);
    res = await download();
  }
  if (res.exitCode !== 0) throw new Error(`apt-get download busybox failed: ${res.stderr}`);
  const deb = (await readdir(dir)).find((f) => f.startsWith("busybox_") && f.endsWith(".deb"));
  if (!deb) throw new Error(`apt-get download busybox left no .deb in ${dir}`);
  return path.join(dir, deb);
}

/** The libraries a dynamic program loads, as ldd prints them (absolute paths, the loader included). */
export function parseLdd(out: string): string[] {
  const libs = new Set<string>();
  for (const line of out.split("\n")) {
    const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
    if (m) libs.add(m[1]!);
  }
  return [...libs].sort();
}

async function copyLibraries(programs: string[], rootfs: string): Promise<void> {
  const libs = new Set<string>();
  for (const p of programs) for (const l of parseLdd((await execa("ldd", [p])).stdout)) libs.add(l);
  for (const lib of libs) {
    const dest = path.join(rootfs, lib);
    await mkdir(path.dirname(dest), { recursive: true });
    await copyFile(lib, dest); // follows the host's symlinks: the image gets the file under the name ldd used
    await chmod(dest, 0o755);
  }
}

/** Builds the busybox rootfs in `rootfs` (which must not exist) using `workDir` for the download. */
export async function buildBusyboxRootfs(rootfs: string, workDir: string): Promise<void> {
  const debDir = path.join(workDir, "busybox-deb");
  await mkdir(debDir, { recursive: true });
  const deb = await downloadBusybox(debDir);
  const extracted = path.join(debDir, "x");
  await execa("dpkg-deb", ["-x", deb, extracted]);
  const debBusybox = path.join(extracted, "bin/busybox");

  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "home", "var/run", "var/log", "var/www", "proc", "sys", "dev"]) {
    await mkdir(path.join(rootfs, d), { recursive: true, mode: 0o755 });
  }
  await mkdir(path.join(rootfs, "tmp"));
  await chmod(path.join(rootfs, "tmp"), 0o1777);
  await mkdir(path.join(rootfs, "root"), { mode: 0o700 });

  const busybox = path.join(rootfs, "bin/busybox");
  await copyFile(debBusybox, busybox);
  await chmod(busybox, 0o755);
  const hostNames = new Set(HOST_PROGRAMS.map((p) => path.basename(p)));
  const applets = (await execa(debBusybox, ["--list"])).stdout.split("\n").filter((a) => a && a !== "busybox" && !hostNames.has(a));
  // Hard links, as in the upstream busybox image: masking /bin/ls must not mask the shell with it.
  for (const a of applets) await link(busybox, path.join(rootfs, "bin", a));
  for (const p of HOST_PROGRAMS) {
    const dest = path.join(rootfs, "bin", path.basename(p));
    await copyFile(p, dest);
    await chmod(dest, 0o755);
  }
  await copyLibraries([debBusybox, ...HOST_PROGRAMS], rootfs);
  await writeFile(path.join(rootfs, "etc/passwd"), PASSWD.join("\n") + "\n", { mode: 0o644 });
  await writeFile(path.join(rootfs, "etc/group"), GROUP.join("\n") + "\n", { mode: 0o644 });
}
