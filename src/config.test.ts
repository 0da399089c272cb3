import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ConfigError, defaultConfig, loadConfig, parseHostPort } from "./config.js";

test("parseHostPort: IPv4, bracketed IPv6, empty host (every address); errors name the key", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:9120", "k"), { host: "127.0.0.1", port: 9120 });
  assert.deepEqual(parseHostPort("[::1]:0", "k"), { host: "::1", port: 0 });
  assert.deepEqual(parseHostPort(":9120", "k"), { host: "", port: 9120 });
  for (const bad of ["9120", "127.0.0.1", "::1:9120", "host:70000", "host:port"]) {
    assert.throws(() => parseHostPort(bad, "metrics.address"), (e: Error) => e instanceof ConfigError && e.message.includes("metrics.address") && e.message.includes(bad));
  }
});

test("[metrics]: default address, empty turns it off, a TLS pair set together, pull_progress_interval checked", async () => {
  assert.equal(defaultConfig().metrics.address, "127.0.0.1:9120");
  assert.equal(defaultConfig().image.pull_progress_interval, "10s");
  const dir = await mkdtemp(path.join(tmpdir(), "berth-config-"));
  try {
    const file = path.join(dir, "berth.toml");
    await writeFile(file, `[metrics]\naddress = ""\n[image]\npull_progress_interval = "250ms"\n`);
    const { config } = await loadConfig({ config: file });
    assert.equal(config.metrics.address, "");
    assert.equal(config.image.pull_progress_interval, "250ms");
    for (const [text, re] of [
      [`[metrics]\ntls_cert = "/c.pem"\n`, /metrics\.tls_cert and metrics\.tls_key must be set together/],
      [`[metrics]\naddress = "nowhere"\n`, /metrics\.address must be host:port/],
      [`[metrics]\nport = 1\n`, /unknown key "metrics\.port"/],
      [`[image]\npull_progress_interval = "1ms"\n`, /pull_progress_interval must be at least 10ms/],
    ] as const) {
      await writeFile(file, text);
      await assert.rejects(loadConfig({ config: file }), re);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
