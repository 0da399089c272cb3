import assert from "node:assert/strict";
import { test } from "node:test";
import { NamespaceMode, PodSandboxConfig, Protocol } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import { cgroupParent, hostsFile, matchesLabels, podHostname, podSysctls, portMappingsCapability, resolvConf, sandboxName, validateMetadata, validatePodConfig } from "./sandbox-config.js";

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

test("validatePodConfig refuses each bad field with a message naming it", () => {
  const base = { metadata: md("p") };
  const ns = (o: object) => ({ linux: { securityContext: { namespaceOptions: { network: 0, pid: 0, ipc: 0, ...o } } } });
  const cases: Array<[string, object, RegExp]> = [
    ["NUL in name", { metadata: md("a\u0000b") }, /metadata\.name/],
    ["newline in namespace", { metadata: md("a", "x\ny") }, /metadata\.namespace/],
    ["relative log dir", { logDirectory: "var/log/pods" }, /log_directory/],
    ["log dir escaping", { logDirectory: "/var/log/../../etc" }, /log_directory/],
    ["empty label key", { labels: { "": "v" } }, /config\.labels key/],
    ["control char in annotation key", { annotations: { "a\nb": "v" } }, /config\.annotations key/],
    ["huge annotation value", { annotations: { a: "x".repeat(70_000) } }, /config\.annotations\["a"\]/],
    ["annotations too big in total", { annotations: Object.fromEntries(Array.from({ length: 5 }, (_v, i) => [`k${i}`, "x".repeat(60_000)])) }, /total/],
    ["network CONTAINER", ns({ network: NamespaceMode.CONTAINER }), /namespace_options\.network = CONTAINER/],
    ["pid TARGET", ns({ pid: NamespaceMode.TARGET }), /namespace_options\.pid = TARGET/],
    ["ipc unknown", ns({ ipc: 42 }), /namespace_options\.ipc = 42/],
    ["DNS server not an IP", { dnsConfig: { servers: ["dns.example"], searches: [], options: [] } }, /not an IP address/],
    ["negative host port", { portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort: -1, hostIp: "" }] }, /must not be negative/],
    ["bad host IP", { portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort: 8080, hostIp: "localhost" }] }, /host_ip "localhost"/],
  ];
  for (const [what, extra, re] of cases) {
    assert.throws(() => validatePodConfig(PodSandboxConfig.fromPartial({ ...base, ...extra })), (e: Error) => e instanceof InvalidArgument && re.test(e.message), what);
  }
  validatePodConfig(PodSandboxConfig.fromPartial({ ...base, logDirectory: "/var/log/pods/x", labels: { "app.kubernetes.io/name": "web" }, dnsConfig: { servers: ["10.0.0.10", "fd00::a"] }, ...ns({ pid: NamespaceMode.CONTAINER }) }));
});
