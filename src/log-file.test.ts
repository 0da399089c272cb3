// berthd's own log file: size-based rotation, kept-file count, whole lines, the logger on top.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { finished } from "node:stream/promises";
import { RotatingFile, rotatedFiles } from "./log-file.js";
import { createDaemonLogger } from "./log.js";

const line = (i: number) => `${`line ${i} `.padEnd(99, "x")}\n`; // 100 bytes

describe("RotatingFile", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(path.join(tmpdir(), "berth-logfile-"))));
  after(async () => rm(dir, { recursive: true, force: true }));

  test("rotates before a line would pass the size, keeps N files, drops the oldest, never splits a line", async () => {
    const file = path.join(dir, "berthd.log");
    await writeFile(file, line(0)); // an existing file is appended to and counted
    const r = await RotatingFile.open(file, 250, 2);
    for (let i = 1; i <= 9; i++) r.write(line(i));
    r.end();
    await finished(r);
    assert.deepEqual(await rotatedFiles(file, 5), [file, `${file}.1`, `${file}.2`]);
    // 2 lines per file: 0-1, 2-3, 4-5, 6-7, 8-9; 0-3 were rotated out of the kept two.
    assert.equal(await readFile(file, "utf8"), line(8) + line(9));
    assert.equal(await readFile(`${file}.1`, "utf8"), line(6) + line(7));
    assert.equal(await readFile(`${file}.2`, "utf8"), line(4) + line(5));
    for (const f of await rotatedFiles(file, 2)) assert.ok((await stat(f)).size <= 250, f);
  });

  test("keep = 0: the file starts over, nothing is kept", async () => {
    const file = path.join(dir, "zero.log");
    const r = await RotatingFile.open(file, 150, 0);
    for (let i = 1; i <= 3; i++) r.write(line(i));
    r.end();
    await finished(r);
    assert.deepEqual(await rotatedFiles(file, 3), [file]);
    assert.equal(await readFile(file, "utf8"), line(3));
  });

  test("a line longer than the maximum is written whole, in a file of its own", async () => {
    const file = path.join(dir, "long.log");
    const r = await RotatingFile.open(file, 50, 3);
    r.write(line(1));
    r.write(line(2));
    r.end();
    await finished(r);
    assert.equal(await readFile(file, "utf8"), line(2));
    assert.equal(await readFile(`${file}.1`, "utf8"), line(1));
  });

  test("createDaemonLogger with log_file: JSON lines in the file, the level can change, rotation applies", async () => {
    const file = path.join(dir, "daemon.log");
    const { log, close } = await createDaemonLogger({ log_level: "info", log_file: file, log_file_max_size: "2KiB", log_file_max_files: 1 });
    const child = log.child({ layer: "x" });
    child.debug("hidden");
    log.level = "debug";
    child.debug("shown");
    for (let i = 0; i < 40; i++) log.info({ i }, "filler line for rotation");
    await close();
    const lines = (await readFile(`${file}.1`, "utf8") + await readFile(file, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { msg: string });
    assert.ok(!lines.some((l) => l.msg === "hidden"));
    assert.ok((await stat(file)).size <= 2048);
    assert.deepEqual(await rotatedFiles(file, 3), [file, `${file}.1`]);
    assert.equal(lines.at(-1)!.msg, "filler line for rotation");
  });
});
