import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile, link } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { execa } from "execa";
import { parsePax, readTar, TarError } from "./tar.js";

async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function entriesOf(buf: Buffer, chunk = 7) {
  const out: Array<{ name: string; type: string; size: number; linkname: string; body: string; mode: number; uid: number; xattrs: Record<string, string> }> = [];
  for await (const e of readTar(chunked(buf, chunk))) {
    let body = "";
    if (e.type === "file" && e.name.endsWith(".txt")) for await (const c of e.body()) body += c.toString();
    out.push({ name: e.name.replace(/\/$/, ""), type: e.type, size: e.size, linkname: e.linkname, body, mode: e.mode, uid: e.uid, xattrs: Object.fromEntries([...e.xattrs].map(([k, v]) => [k, v.toString()])) });
  }
  return out;
}

test("reads archives GNU tar writes in gnu, ustar and pax formats, from any chunking", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-tar-"));
  try {
    const src = path.join(dir, "src");
    const long = "d".repeat(80) + "/" + "e".repeat(90);
    await mkdir(path.join(src, long), { recursive: true });
    await writeFile(path.join(src, long, "file.txt"), "deep");
    await writeFile(path.join(src, "a.txt"), "A".repeat(1000));
    await writeFile(path.join(src, "skipped.bin"), Buffer.alloc(5000, 1));
    await symlink("a.txt", path.join(src, "sym"));
    await link(path.join(src, "a.txt"), path.join(src, "hard"));
    await execa("setfattr", ["-n", "user.k", "-v", "v", path.join(src, "a.txt")]);
    for (const format of ["gnu", "pax", "ustar"]) {
      const args = ["-C", src, "--sort=name", "--owner=7", "--group=8", "-c", `--format=${format}`];
      if (format === "pax") args.push("--xattrs", "--xattrs-include=user.*");
      args.push(".");
      if (format === "ustar") args.splice(args.indexOf("."), 1, "a.txt", "hard", "sym", "skipped.bin");
      const tar = Buffer.from((await execa("tar", args, { encoding: "buffer" })).stdout);
      for (const chunk of [1, 7, 512, 65536]) {
        const es = await entriesOf(tar, chunk);
        const by = (n: string) => es.find((e) => e.name === n || e.name === `./${n}`);
        assert.equal(by("a.txt")?.body, "A".repeat(1000), `${format}/${chunk}`);
        assert.equal(by("a.txt")?.uid, 7);
        assert.equal(by("sym")?.type, "symlink");
        assert.equal(by("sym")?.linkname, "a.txt");
        assert.equal(by("hard")?.type, "hardlink");
        assert.equal(by("skipped.bin")?.size, 5000);
        if (format !== "ustar") assert.equal(by(`${long}/file.txt`)?.body, "deep", `${format} long name`);
        if (format === "pax") assert.deepEqual(by("a.txt")?.xattrs, { "user.k": "v" });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("truncated and corrupt archives fail clearly", async () => {
  const header = Buffer.alloc(512);
  header.write("x.txt", 0);
  header.write("0000644\0", 100);
  header.write("00000000012\0", 124);
  header.write("0", 156);
  header.write("        ", 148);
  let sum = 0;
  for (const c of header) sum += c;
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  await assert.rejects(entriesOf(Buffer.concat([header, Buffer.from("short")])), (e) => e instanceof TarError && /ends in the middle/.test(e.message));
  const bad = Buffer.from(header);
  bad[0] = 0x79;
  await assert.rejects(entriesOf(bad), /checksum mismatch/);
});

test("pax records", () => {
  assert.deepEqual([...parsePax(Buffer.from("12 path=a/b\n20 SCHILY.xattr.x=y\n"))].map(([k, v]) => [k, v.toString()]), [["path", "a/b"], ["SCHILY.xattr.x", "y"]]);
  assert.throws(() => parsePax(Buffer.from("99 path=x\n")), /bad pax record length/);
});
