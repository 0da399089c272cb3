import assert from "node:assert/strict";
import { test } from "node:test";
import { bandwidthFromAnnotations, formatCniArgs, orderPodIPs, parseNetworkConfig, parseQuantity, pluginInput, resultAddresses, resultIPs, runtimeConfigFor, versionAtLeast } from "./config.js";

test("parseNetworkConfig: conflist, single-plugin conf lifted into a list, errors name the file", () => {
  const list = parseNetworkConfig("a.conflist", JSON.stringify({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge" }, { type: "portmap" }] }));
  assert.deepEqual(list.plugins.map((p) => p.type), ["bridge", "portmap"]);
  const conf = parseNetworkConfig("b.conf", JSON.stringify({ cniVersion: "0.3.1", name: "m", type: "bridge", bridge: "x" }));
  assert.deepEqual(conf.plugins, [{ type: "bridge", bridge: "x" }]);
  assert.equal(conf.cniVersion, "0.3.1");
  assert.equal(parseNetworkConfig("c.json", JSON.stringify({ name: "old", type: "bridge" })).cniVersion, "0.2.0");
  for (const [text, re] of [["{", /c\.conf: invalid JSON/], ["[]", /not a JSON object/], ['{"type":"x"}', /missing "name"/], ['{"name":"n"}', /missing "type"/], ['{"name":"n","plugins":[{}]}', /plugins\[0\] has no "type"/]] as const) {
    assert.throws(() => parseNetworkConfig("c.conf", text), re);
  }
});

test("versionAtLeast", () => {
  const cases: Array<[string, string, boolean]> = [["1.0.0", "0.4.0", true], ["0.4.0", "0.4.0", true], ["0.3.1", "0.4.0", false], ["0.3.1", "0.3.0", true], ["0.2.0", "0.3.0", false]];
  for (const [v, min, want] of cases) assert.equal(versionAtLeast(v, min), want, `${v} >= ${min}`);
});

test("runtimeConfigFor: only declared capabilities with values", () => {
  const caps = { portMappings: [{ hostPort: 1, containerPort: 2, protocol: "tcp" }], dns: { servers: ["1.1.1.1"] }, bandwidth: undefined };
  assert.equal(runtimeConfigFor({ type: "bridge" }, caps), undefined);
  assert.deepEqual(runtimeConfigFor({ type: "portmap", capabilities: { portMappings: true, bandwidth: true } }, caps), { portMappings: caps.portMappings });
  assert.equal(runtimeConfigFor({ type: "portmap", capabilities: { portMappings: false } }, caps), undefined);
});

test("pluginInput: name and version from the list, prevResult, runtimeConfig", () => {
  const list = { name: "net", cniVersion: "1.0.0" };
  const prev = { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24" }] };
  const input = pluginInput(list, { type: "portmap", capabilities: { portMappings: true }, snat: true }, prev, { portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }] });
  assert.deepEqual(input, {
    type: "portmap", snat: true, cniVersion: "1.0.0", name: "net", capabilities: { portMappings: true }, prevResult: prev,
    runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }] },
  });
  assert.deepEqual(pluginInput(list, { type: "bridge", name: "ignored", cniVersion: "0.1.0" }, undefined, {}), { type: "bridge", name: "net", cniVersion: "1.0.0" });
});

test("formatCniArgs refuses separators in values", () => {
  assert.equal(formatCniArgs([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]]), "IgnoreUnknown=1;K8S_POD_NAME=web");
  assert.throws(() => formatCniArgs([["K8S_POD_NAME", "a;b=c"]]), /must not contain/);
});

test("resultIPs and resultAddresses: 1.0.0, 0.4.0 interface order, 0.2.0", () => {
  const r1 = {
    interfaces: [{ name: "cni0" }, { name: "veth1" }, { name: "eth0", sandbox: "/ns" }],
    ips: [{ address: "fd00::5/64", interface: 2 }, { address: "10.0.0.5/24", interface: 2 }, { address: "192.168.0.1/24", interface: 0 }],
  };
  assert.deepEqual(resultIPs(r1), ["fd00::5", "10.0.0.5", "192.168.0.1"]);
  assert.deepEqual(resultAddresses(r1), ["fd00::5/64", "10.0.0.5/24", "192.168.0.1/24"]);
  assert.deepEqual(resultIPs({ ip4: { ip: "10.1.0.2/16" }, ip6: { ip: "fd00::2/64" } }), ["10.1.0.2", "fd00::2"]);
  assert.deepEqual(resultIPs(undefined), []);
  assert.deepEqual(resultIPs({ ips: [{ address: "10.0.0.9/8" }] }), ["10.0.0.9"]);
});

test("orderPodIPs puts the first IPv4 first and drops duplicates", () => {
  assert.deepEqual(orderPodIPs(["fd00::5", "10.0.0.5", "fd00::6"]), ["10.0.0.5", "fd00::5", "fd00::6"]);
  assert.deepEqual(orderPodIPs(["10.0.0.5", "10.0.0.5"]), ["10.0.0.5"]);
  assert.deepEqual(orderPodIPs(["fd00::1"]), ["fd00::1"]);
});

test("parseQuantity and bandwidth annotations", () => {
  assert.equal(parseQuantity("10M"), 10_000_000);
  assert.equal(parseQuantity("1Ki"), 1024);
  assert.equal(parseQuantity("1.5k"), 1500);
  assert.throws(() => parseQuantity("ten"), /not a quantity/);
  assert.equal(bandwidthFromAnnotations({}), undefined);
  assert.deepEqual(bandwidthFromAnnotations({ "kubernetes.io/ingress-bandwidth": "1M" }), { ingressRate: 1_000_000, ingressBurst: 2 ** 32 - 1 });
  assert.deepEqual(bandwidthFromAnnotations({ "kubernetes.io/egress-bandwidth": "2G" }), { egressRate: 2_000_000_000, egressBurst: 2 ** 32 - 1 });
});
