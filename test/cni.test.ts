// The CNI layer on its own, with real plugins (bridge, host-local, portmap, loopback) and a
// recording plugin of the test's own, in a real pinned network namespace. Bridge bpod2, 10.89.2.0/24.
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CniNetwork, type Attachment } from "../src/cni/network.js";
import { CniConfWatcher } from "../src/cni/watcher.js";
import { DeadlineExceeded } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { pinNamespaces, unpinNamespaces } from "../src/runtime/namespaces.js";
import { waitFor } from "./harness/berthd.js";
import { bridgePorts, deleteBridge, sh } from "./sandbox-net.js";

const BRIDGE = "bpod2";
const SUBNET = "10.89.2.0/24";
const log = createLogger("error");

// Logs each call (command, env, stdin) as a JSON line, passes prevResult through on ADD.
const RECORDER = `#!/bin/sh
in=$(cat)
log=$(printf '%s' "$in" | jq -r .log)
printf '%s' "$in" | jq -c --arg cmd "$CNI_COMMAND" --arg id "$CNI_CONTAINERID" --arg netns "$CNI_NETNS" --arg ifname "$CNI_IFNAME" --arg args "$CNI_ARGS" --arg path "$CNI_PATH" \\
  '{cmd:$cmd,id:$id,netns:$netns,ifname:$ifname,args:$args,path:$path,stdin:.}' >> "$log"
case "$CNI_COMMAND" in
ADD) printf '%s' "$in" | jq -c .prevResult ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
esac
`;

describe("CNI plugin invocation", () => {
  let dir: string;
  let confDir: string;
  let binDir: string;
  let watcher: CniConfWatcher;
  let net: CniNetwork;
  let nsDir: string;
  let att: Attachment;
  const calls = async (file: string) => (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

  const writeConf = async (name: string, version: string, extra: object[], file = "10-test.conflist", portmap = true) => {
    await writeFile(path.join(confDir, file), JSON.stringify({
      cniVersion: version, name,
      plugins: [
        { type: "bridge", bridge: BRIDGE, isGateway: true, ipMasq: true, ipam: { type: "host-local", dataDir: path.join(dir, "ipam"), ranges: [[{ subnet: SUBNET }]] } },
        ...(portmap ? [{ type: "portmap", capabilities: { portMappings: true } }] : []),
        ...extra,
      ],
    }));
  };
  const waitForNetwork = (name: string) => waitFor(`network ${name}`, async () => (await watcher.current()).config?.name === name, 5000, 20);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-cni-"));
    confDir = path.join(dir, "net.d");
    binDir = path.join(dir, "bin");
    await mkdir(binDir, { recursive: true });
    await writeFile(path.join(binDir, "berth-recorder"), RECORDER);
    await writeFile(path.join(binDir, "berth-sleeper"), "#!/bin/sh\ncat >/dev/null\nexec sleep 30\n");
    await chmod(path.join(binDir, "berth-recorder"), 0o755);
    await chmod(path.join(binDir, "berth-sleeper"), 0o755);
    watcher = new CniConfWatcher(confDir, [binDir, "/usr/lib/cni"], log);
    await watcher.start();
    net = new CniNetwork(watcher, path.join(dir, "root"), 5000, log);
    await net.init();
    nsDir = path.join(dir, "ns");
    const pins = await pinNamespaces(nsDir, ["net"], "");
    att = { containerId: "c".repeat(64), netns: pins.net!, podName: "web", podNamespace: "default", podUid: "uid-1" };
  });

  after(async () => {
    watcher?.close();
    await net?.tearDown(att).catch(() => undefined);
    await unpinNamespaces(nsDir).catch(() => undefined);
    await deleteBridge(BRIDGE);
    await rm(dir, { recursive: true, force: true });
  });

  test("the conf watcher follows the dir: none, an invalid file skipped, lexical order, missing plugins", async () => {
    let c = await watcher.condition();
    assert.equal(c.ready, false);
    assert.match(c.message, /no CNI network config found/);
    await writeFile(path.join(confDir, "01-broken.conf"), "{nope");
    await waitFor("skip report", async () => /01-broken\.conf: invalid JSON/.test((await watcher.condition()).message), 5000, 20);
    await writeFile(path.join(confDir, "20-later.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "later", plugins: [{ type: "no-such-plugin" }] }));
    await waitFor("missing plugin report", async () => /no-such-plugin/.test((await watcher.condition()).message), 5000, 20);
    await writeConf("first", "1.0.0", [], "10-first.conflist");
    await waitForNetwork("first");
    c = await watcher.condition();
    assert.equal(c.ready, true, c.message);
    await writeFile(path.join(confDir, "05-future.conflist"), JSON.stringify({ cniVersion: "9.9.9", name: "future", plugins: [{ type: "bridge" }] }));
    await waitFor("unsupported version report", async () => /cniVersion 9\.9\.9/.test((await watcher.condition()).message), 5000, 20);
    for (const f of ["01-broken.conf", "20-later.conflist", "10-first.conflist", "05-future.conflist"]) await rm(path.join(confDir, f));
    await waitFor("empty again", async () => /no CNI network config found/.test((await watcher.condition()).message), 5000, 20);
  });

  test("ADD chains prevResult, passes the spec's environment and declared capabilities; DEL uses the cache", async () => {
    const logFile = path.join(dir, "calls-1.jsonl");
    await writeConf("chain", "1.0.0", [{ type: "berth-recorder", log: logFile, capabilities: { portMappings: true, dns: true } }]);
    await waitForNetwork("chain");
    const caps = { portMappings: [{ hostPort: 18050, containerPort: 80, protocol: "tcp" }], dns: { servers: ["10.0.0.10"] }, bandwidth: { ingressRate: 1000 } };
    const r = await net.setUp(att, caps).catch(async (err) => {
      await net.tearDown(att);
      throw err;
    });
    assert.equal(r.network, "chain");
    const ip = (r.result as { ips: Array<{ address: string }> }).ips[0]!.address;
    assert.match(ip, /^10\.89\.2\.\d+\/24$/);
    assert.equal((await bridgePorts(BRIDGE)).length, 1);
    const inside = await sh("nsenter", [`--net=${att.netns}`, "ip", "-o", "addr"]);
    assert.match(inside.stdout, /lo\s+inet 127\.0\.0\.1/, "loopback attached");
    assert.ok(inside.stdout.includes(ip), "eth0 has the address");
    const [add] = await calls(logFile);
    assert.equal(add!.cmd, "ADD");
    assert.equal(add!.id, att.containerId);
    assert.equal(add!.netns, att.netns);
    assert.equal(add!.ifname, "eth0");
    assert.equal(add!.path, `${binDir}:/usr/lib/cni`);
    assert.equal(add!.args, `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=${att.containerId};K8S_POD_UID=uid-1`);
    assert.equal(add!.stdin.name, "chain");
    assert.equal(add!.stdin.cniVersion, "1.0.0");
    assert.equal(add!.stdin.prevResult.ips[0].address, ip, "the bridge's result chained through portmap");
    assert.deepEqual(add!.stdin.runtimeConfig, { portMappings: caps.portMappings, dns: caps.dns }, "only declared capabilities");

    // DEL uses the config the ADD used, even after the conf dir moved on
    await writeConf("other", "1.0.0", []);
    await waitForNetwork("other");
    await net.tearDown(att);
    const del = (await calls(logFile))[1]!;
    assert.equal(del.cmd, "DEL");
    assert.equal(del.stdin.name, "chain");
    assert.equal(del.stdin.prevResult.ips[0].address, ip);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
    await assert.rejects(stat(path.join(dir, "root", "cni", "results", `${att.containerId}-eth0.json`)), /ENOENT/);
    // a second DEL is fine
    await net.tearDown(att);
  });

  test("CHECK (spec 0.4.0) passes the cached result as prevResult to every plugin", async () => {
    const logFile = path.join(dir, "calls-check.jsonl");
    // portmap 1.1.1's CHECK fails on hosts without IPv6 NAT chains, so this chain leaves it out.
    await writeConf("checked", "0.4.0", [{ type: "berth-recorder", log: logFile }], "10-test.conflist", false);
    await waitForNetwork("checked");
    try {
      const r = await net.setUp(att, {});
      await net.check(att);
      const [add, check] = await calls(logFile);
      assert.equal(add!.cmd, "ADD");
      assert.equal(check!.cmd, "CHECK");
      assert.deepEqual(check!.stdin.prevResult, r.result);
    } finally {
      await net.tearDown(att);
    }
  });

  test("spec 0.3.1: prevResult chained on ADD, not sent on DEL; CHECK is skipped", async () => {
    const logFile = path.join(dir, "calls-2.jsonl");
    await writeConf("old", "0.3.1", [{ type: "berth-recorder", log: logFile }]);
    await waitForNetwork("old");
    try {
      await net.setUp(att, {});
      await net.check(att);
    } finally {
      await net.tearDown(att);
    }
    const all = await calls(logFile);
    assert.deepEqual(all.map((c) => c.cmd), ["ADD", "DEL"]);
    assert.ok(all[0]!.stdin.prevResult);
    assert.equal(all[1]!.stdin.prevResult, undefined);
    assert.equal(all[0]!.stdin.runtimeConfig, undefined, "no capabilities declared");
  });

  test("a plugin that hangs is killed after the timeout and the attachment is undone", async () => {
    const short = new CniNetwork(watcher, path.join(dir, "root"), 500, log);
    await writeConf("hang", "1.0.0", [{ type: "berth-sleeper" }]);
    await waitForNetwork("hang");
    const t0 = Date.now();
    await assert.rejects(short.setUp(att, {}), (err: Error) => err instanceof Error && /berth-sleeper" ADD timed out after 500 ms/.test(err.message) && err.cause instanceof DeadlineExceeded);
    assert.ok(Date.now() - t0 < 10_000);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
  });

  test("no config: setUp is refused with FailedPrecondition naming the dir", async () => {
    await rm(path.join(confDir, "10-test.conflist"));
    await waitFor("no network", async () => !(await watcher.current()).config, 5000, 20);
    await assert.rejects(net.setUp(att, {}), (err: Error & { code?: number }) => err.code === 9 && err.message.includes(confDir));
  });
});
