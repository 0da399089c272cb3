// docs/config.md and `berthd config --default` follow the schema in config.ts.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { changedKeys, defaultConfig, keyValues, LIVE_KEYS, loadConfig, parseSize, SCHEMA, type Table } from "./config.js";
import { configReference, defaultConfigToml } from "./config-doc.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

describe("configuration reference", () => {
  test("docs/config.md is what the schema generates (regenerate: node dist/src/config-doc.js > docs/config.md)", async () => {
    const onDisk = await readFile(path.join(REPO, "docs/config.md"), "utf8");
    assert.equal(onDisk, configReference());
  });

  test("every key and table has a description, and every key is in the reference", () => {
    const missing: string[] = [];
    const walk = (t: Table, prefix: string) => {
      for (const [k, e] of Object.entries(t.entries)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (!e.doc) missing.push(p);
        if (e.kind === "table") walk(e, p);
        if (e.kind === "map" && e.of.kind === "table") walk(e.of, `${p}.<${e.entryName}>`);
      }
    };
    walk(SCHEMA, "");
    assert.deepEqual(missing, []);
    const doc = configReference();
    for (const k of keyValues(defaultConfig()).keys()) assert.match(doc, new RegExp(`\`${k.split(".").pop()}\``), k);
  });

  test("every live key is a key of the schema", () => {
    const keys = [...keyValues(defaultConfig()).keys()];
    for (const k of LIVE_KEYS) assert.ok(keys.includes(k), k);
  });

  test("berthd config --default's TOML loads back as exactly the defaults", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-confdoc-"));
    try {
      const file = path.join(dir, "berth.toml");
      await writeFile(file, defaultConfigToml());
      const { config } = await loadConfig({ config: file });
      assert.deepEqual(config, defaultConfig());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("config changes and sizes", () => {
  test("changedKeys splits live keys from the ones needing a restart", () => {
    const a = defaultConfig();
    const b = defaultConfig();
    b.log_level = "debug";
    b.image.mirrors = { "docker.io": ["http://127.0.0.1:5000"] };
    b.root = "/elsewhere";
    b.runtime.handlers.kata = { path: "kata-runtime", root: "" };
    assert.deepEqual(changedKeys(a, b), { live: ["log_level", "image.mirrors"], restart: ["root", "runtime.handlers"] });
    assert.deepEqual(changedKeys(a, defaultConfig()), { live: [], restart: [] });
  });

  test("parseSize", () => {
    assert.equal(parseSize("4096"), 4096);
    assert.equal(parseSize("512KiB"), 512 * 1024);
    assert.equal(parseSize("10MiB"), 10 * 1024 * 1024);
    assert.equal(parseSize("1GiB"), 1024 ** 3);
    assert.throws(() => parseSize("10MB"), /not a size/);
    assert.throws(() => parseSize("-1"), /not a size/);
  });
});
