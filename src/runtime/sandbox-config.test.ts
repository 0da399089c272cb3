import assert from "node:assert/strict";
import { test } from "node:test";
import { Protocol } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import { cgroupParent, hostsFile, matchesLabels, podHostname, podSysctls, portMappingsCapability, resolvConf, sandboxName, validateMetadata } from "./sandbox-config.js";

const md = (name: string, namespace = "ns", uid = "u1", attempt = 0) => ({ name, namespace, uid, attempt });

test("sandboxName joins name, namespace, uid and attempt", () => {
  assert.equal(sandboxName(md("web", "default", "abc", 2)), "web_default_abc_2");
});

test("validateMetadata", () => {
  assert.throws(() => validateMetadata(undefined), InvalidArgument);
  assert.throws(() => validateMetadata(md("")), /name must not be empty/);
  assert.throws(() => validateMetadata(md("a", "")), /namespace must not be empty/);
  assert.throws(() => validateMetadata(md("a;b")), /metadata\.name/);
  assert.throws(() => validateMetadata(md("a", "n", "x=y")), /metadata\.uid/);
  assert.deepEqual(validateMetadata(md("a")), md("a"));
});

test("podHostname", () => {
  const cases: Array<[string, string, boolean, string]> = [
    ["web-0", "web", false, "web-0"],
    ["", "My_Pod", false, "my-pod"],
    ["", "web", true, "node1"],
    ["", "___", false, "pod"],
  ];
  for (const [req, name, hostNet, want] of cases) assert.equal(podHostname(req, name, hostNet, "node1"), want);
  assert.throws(() => podHostname("bad host", "x", false, "n"), /not a valid hostname/);
  assert.throws(() => podHostname("a".repeat(65), "x", false, "n"), /not a valid hostname/);
});

test("resolvConf", () => {
  const dns = (servers: string[], searches: string[] = [], options: string[] = []) => ({ servers, searches, options });
  assert.equal(resolvConf(undefined, "nameserver 1.1.1.1\n"), "nameserver 1.1.1.1\n");
  assert.equal(resolvConf(dns([]), "host\n"), "host\n");
  assert.equal(resolvConf(dns(["10.10.10.10"], ["google.com"], ["ndots:8"]), "host\n"), "search google.com\nnameserver 10.10.10.10\noptions ndots:8\n");
  assert.equal(resolvConf(dns([], ["a.b"]), "host\n"), "search a.b\n");
  assert.throws(() => resolvConf(dns(["1.1.1.1 evil"]), ""), /dns_config\.servers/);
  assert.throws(() => resolvConf(dns([], [], ["a\nb"]), ""), /dns_config\.options/);
});

test("hostsFile has localhost and the pod's addresses", () => {
  const text = hostsFile("web", ["10.0.0.2"]);
  assert.match(text, /^127\.0\.0\.1\tlocalhost$/m);
  assert.match(text, /^10\.0\.0\.2\tweb$/m);
});

test("podSysctls", () => {
  assert.deepEqual(podSysctls({ "net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100", "net/ipv4/conf/eth0.100/forwarding": "1" }, false, false), [
    { key: "net.ipv4.ip_forward", procPath: "net/ipv4/ip_forward", kind: "net", value: "1" },
    { key: "kernel.shm_rmid_forced", procPath: "kernel/shm_rmid_forced", kind: "ipc", value: "1" },
    { key: "fs.mqueue.msg_max", procPath: "fs/mqueue/msg_max", kind: "ipc", value: "100" },
    { key: "net/ipv4/conf/eth0.100/forwarding", procPath: "net/ipv4/conf/eth0.100/forwarding", kind: "net", value: "1" },
  ]);
  const bad: Array<[Record<string, string>, boolean, boolean, RegExp]> = [
    [{ "vm.swappiness": "1" }, false, false, /not namespaced/],
    [{ "kernel.hostname": "x" }, false, false, /not namespaced/],
    [{ "net.ipv4.ip_forward": "1" }, true, false, /host network/],
    [{ "kernel.sem": "1 2 3 4" }, false, true, /host IPC/],
    [{ "net.ipv4.ip_forward": "1\n" }, false, false, /one line/],
    [{ "net.ipv4.ip_forward": "1;2" }, false, false, /one line/],
    [{ "net.ipv4.ip_forward": "" }, false, false, /non-empty/],
    [{ "net/../../etc": "1" }, false, false, /not a valid sysctl name/],
    [{ "net..x": "1" }, false, false, /not a valid sysctl name/],
  ];
  for (const [s, hn, hi, re] of bad) assert.throws(() => podSysctls(s, hn, hi), re, JSON.stringify(s));
});

test("cgroupParent", () => {
  assert.equal(cgroupParent("cgroupfs", ""), "/berth");
  assert.equal(cgroupParent("cgroupfs", "/kubepods/besteffort/pod1/"), "/kubepods/besteffort/pod1");
  assert.equal(cgroupParent("systemd", ""), "system.slice");
  assert.equal(cgroupParent("systemd", "/test.slice"), "test.slice");
  assert.equal(cgroupParent("systemd", "kubepods-besteffort-pod1.slice"), "kubepods-besteffort-pod1.slice");
  assert.throws(() => cgroupParent("cgroupfs", "relative"), /absolute/);
  assert.throws(() => cgroupParent("cgroupfs", "/a/../b"), /\.\./);
  assert.throws(() => cgroupParent("systemd", "/kubepods/x"), /systemd slice/);
});

test("portMappingsCapability", () => {
  const pm = (containerPort: number, hostPort: number, protocol = Protocol.TCP, hostIp = "") => ({ containerPort, hostPort, protocol, hostIp });
  assert.equal(portMappingsCapability([pm(80, 0)]), undefined);
  assert.deepEqual(portMappingsCapability([pm(80, 8080), pm(53, 5353, Protocol.UDP, "127.0.0.1")]), [
    { hostPort: 8080, containerPort: 80, protocol: "tcp" },
    { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
  ]);
  assert.throws(() => portMappingsCapability([pm(0, 80)]), /1-65535/);
  assert.throws(() => portMappingsCapability([pm(80, 70000)]), /1-65535/);
});

test("matchesLabels", () => {
  assert.equal(matchesLabels({ a: "1", b: "2" }, { a: "1" }), true);
  assert.equal(matchesLabels({ a: "1" }, { a: "2" }), false);
  assert.equal(matchesLabels({}, {}), true);
});
