// Pod sandboxes against a real berthd: pinned namespaces, real CNI plugins (bridge,
// host-local, portmap, loopback) on a private bridge (bpod1, 10.89.1.0/24), host ports 18001-18009.
import { status } from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { hostname as osHostname, tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { NamespaceMode, PodSandboxState } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { bridgePorts, deleteBridge, filesUnder, iptablesRulesFor, mountsUnder, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bpod1";
const SUBNET = "10.89.1.0/24";

interface Info {
  netNamespacePath: string;
  ipcNamespacePath: string;
  utsNamespacePath: string;
  resolvConfPath: string;
  hostsPath: string;
  shmPath: string;
  cniResult: { ips?: Array<{ address: string }> } | null;
  [k: string]: unknown;
}

function rpcError(code: number, re: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, re);
    return true;
  };
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

describe("pod sandboxes with a CNI bridge network", () => {
  let d: Berthd;
  let dir: string;
  const background: ChildProcess[] = [];

  const run = async (name: string, extra: Record<string, unknown> = {}) =>
    (await d.cri.runtime.runPodSandbox({ config: podConfig(name, extra) })).podSandboxId;
  const inspect = async (id: string) => {
    const r = await d.cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    return { status: r.status!, info: JSON.parse(r.info.info!) as Info };
  };
  const removePod = async (id: string) => {
    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-pod-"));
    await writeBridgeConflist(dir, BRIDGE, SUBNET);
    await mkdir(path.join(dir, "bin"), { recursive: true });
    d = await startBerthd({ dir, config: `[cni]\nbin_dirs = ["${path.join(dir, "bin")}", "/usr/lib/cni"]\nplugin_timeout = "20s"\n` });
    await waitFor("NetworkReady", async () => {
      const s = await d.cri.runtime.status({});
      return s.status!.conditions.find((c) => c.type === "NetworkReady")?.status;
    });
  });

  after(async () => {
    for (const p of background) p.kill("SIGKILL");
    if (d) {
      const pods = await d.cri.runtime.listPodSandbox({}).catch(() => ({ items: [] }));
      for (const p of pods.items) await removePod(p.id).catch(() => undefined);
      await d.cleanup();
    }
    await deleteBridge(BRIDGE);
    await rm(dir, { recursive: true, force: true });
  });

  test("two pods get IPs from the subnet and reach each other", async () => {
    const a = await run("ping-a");
    const b = await run("ping-b");
    const sa = await inspect(a);
    const sb = await inspect(b);
    assert.equal(sa.status.state, PodSandboxState.SANDBOX_READY);
    assert.match(sa.status.network!.ip, /^10\.89\.1\.\d+$/);
    assert.match(sb.status.network!.ip, /^10\.89\.1\.\d+$/);
    assert.notEqual(sa.status.network!.ip, sb.status.network!.ip);
    assert.equal(sa.info.cniResult!.ips![0]!.address.split("/")[0], sa.status.network!.ip);
    assert.deepEqual((await bridgePorts(BRIDGE)).length, 2);
    const ping = await sh("nsenter", [`--net=${sa.info.netNamespacePath}`, "busybox", "ping", "-c1", "-W3", sb.status.network!.ip]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    // loopback is up inside the pod
    const lo = await sh("nsenter", [`--net=${sa.info.netNamespacePath}`, "busybox", "ping", "-c1", "-W2", "127.0.0.1"]);
    assert.equal(lo.code, 0, lo.stdout + lo.stderr);
    // each pod has its own UTS namespace with its hostname, and a /dev/shm tmpfs
    assert.equal((await sh("nsenter", [`--uts=${sa.info.utsNamespacePath}`, "hostname"])).stdout.trim(), "ping-a");
    assert.equal((await readFile(path.join(path.dirname(sa.info.hostsPath), "hostname"), "utf8")), "ping-a\n");
    assert.match(await readFile(sa.info.hostsPath, "utf8"), new RegExp(`${sa.status.network!.ip.replace(/\./g, "\\.")}\\tping-a`));
    assert.ok((await mountsUnder(sa.info.shmPath)).includes(sa.info.shmPath));
    await removePod(a);
    await removePod(b);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
  });

  test("a hostPort mapping reaches a listener in the pod from the host", async () => {
    const id = await run("web", { portMappings: [{ containerPort: 8080, hostPort: 18001 }] });
    const { status: s, info } = await inspect(id);
    const www = path.join(dir, "www");
    await mkdir(www, { recursive: true });
    await writeFile(path.join(www, "index.html"), "hello from the pod\n");
    const httpd = spawn("nsenter", [`--net=${info.netNamespacePath}`, "busybox", "httpd", "-f", "-p", "8080", "-h", www], { stdio: "ignore" });
    background.push(httpd);
    try {
      const direct = await waitFor("httpd in the pod", () => httpGet(`http://${s.network!.ip}:8080/`).catch(() => undefined));
      assert.equal(direct, "hello from the pod\n");
      const hostIp = (await sh("ip", ["-4", "-o", "route", "get", "1.1.1.1"])).stdout.match(/src (\S+)/)?.[1];
      assert.ok(hostIp, "host has an IPv4 address");
      assert.equal(await httpGet(`http://${hostIp}:18001/`), "hello from the pod\n");
      assert.ok((await iptablesRulesFor([id])).length > 0, "portmap installed rules for the pod");
    } finally {
      httpd.kill("SIGKILL");
    }
    await removePod(id);
    assert.deepEqual(await iptablesRulesFor([id]), []);
  });

  test("a hostNetwork pod shares the host's network, UTS and hosts file", async () => {
    const id = await run("hostnet", {
      hostname: "",
      linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.NODE } } },
    });
    const { status: s, info } = await inspect(id);
    assert.equal(s.state, PodSandboxState.SANDBOX_READY);
    assert.equal(s.network!.ip, "");
    assert.equal(info.netNamespacePath, "");
    assert.equal(info.ipcNamespacePath, "");
    assert.equal(info.shmPath, "/dev/shm");
    assert.equal(info.hostname, osHostname());
    assert.equal(await readFile(info.hostsPath, "utf8"), await readFile("/etc/hosts", "utf8"));
    assert.equal(s.linux!.namespaces!.options!.network, NamespaceMode.NODE);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
    await removePod(id);
  });

  test("DNS config lands in resolv.conf; without one the host's is used", async () => {
    const id = await run("dns", { dnsConfig: { servers: ["10.10.10.10", "10.10.10.11"], searches: ["google.com", "svc.local"], options: ["ndots:8"] } });
    const { info } = await inspect(id);
    assert.equal(await readFile(info.resolvConfPath, "utf8"), "search google.com svc.local\nnameserver 10.10.10.10\nnameserver 10.10.10.11\noptions ndots:8\n");
    const plain = await run("nodns");
    assert.equal(await readFile((await inspect(plain)).info.resolvConfPath, "utf8"), await readFile("/etc/resolv.conf", "utf8"));
    await assert.rejects(run("baddns", { dnsConfig: { servers: ["1.1.1.1\nnameserver 6.6.6.6"] } }), rpcError(status.INVALID_ARGUMENT, /dns_config\.servers/));
    await removePod(id);
    await removePod(plain);
  });

  test("sysctls apply inside the pod's namespaces; non-namespaced or multi-line ones are refused", async () => {
    const id = await run("sysctl", { linux: { sysctls: { "net.ipv4.ip_unprivileged_port_start": "79", "net/ipv4/ping_group_range": "0 2000", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100" } } });
    const { info } = await inspect(id);
    const read = async (kind: string, ns: string, file: string) => (await sh("nsenter", [`--${kind}=${ns}`, "cat", `/proc/sys/${file}`])).stdout.trim();
    assert.equal(await read("net", info.netNamespacePath, "net/ipv4/ip_unprivileged_port_start"), "79");
    assert.equal(await read("net", info.netNamespacePath, "net/ipv4/ping_group_range"), "0\t2000");
    assert.equal(await read("ipc", info.ipcNamespacePath, "kernel/shm_rmid_forced"), "1");
    assert.equal(await read("ipc", info.ipcNamespacePath, "fs/mqueue/msg_max"), "100");
    // the host's values are untouched
    assert.notEqual((await readFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8")).trim(), "79");
    await removePod(id);
    await assert.rejects(run("bad1", { linux: { sysctls: { "vm.swappiness": "10" } } }), rpcError(status.INVALID_ARGUMENT, /not namespaced/));
    await assert.rejects(run("bad2", { linux: { sysctls: { "net.ipv4.ip_forward": "1\nkernel.x=1" } } }), rpcError(status.INVALID_ARGUMENT, /one line/));
    await assert.rejects(run("bad3", { linux: { sysctls: { "net.core.somaxconn": "1024" }, securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER } } } }), rpcError(status.INVALID_ARGUMENT, /host network/));
    await assert.rejects(run("bad4", { linux: { sysctls: { "net.ipv4.no_such_sysctl": "1" } } }), rpcError(status.INTERNAL, /set sysctl net\.ipv4\.no_such_sysctl/));
    assert.deepEqual(await mountsUnder(d.state), []);
  });

  test("requests berth must refuse: duplicate name, unknown handler, shared PID without infra, no metadata", async () => {
    const cfg = podConfig("dup");
    const id = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: cfg }), rpcError(status.ALREADY_EXISTS, new RegExp(`reserved for "${id}"`)));
    await removePod(id);
    const again = (await d.cri.runtime.runPodSandbox({ config: cfg })).podSandboxId;
    await removePod(again);
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: podConfig("h"), runtimeHandler: "kata" }), rpcError(status.INVALID_ARGUMENT, /runtime_handler "kata".*runc/));
    await assert.rejects(run("sharedpid", { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } }), rpcError(status.FAILED_PRECONDITION, /infra container/));
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: {} }), rpcError(status.INVALID_ARGUMENT, /metadata/));
    await assert.rejects(d.cri.runtime.podSandboxStatus({ podSandboxId: "nope" }), rpcError(status.NOT_FOUND, /nope/));
  });

  test("Stop and Remove are idempotent; status and list follow the state", async () => {
    const id = await run("twice");
    const other = await run("other", { labels: { app: "other", tier: "x" } });
    let list = await d.cri.runtime.listPodSandbox({ filter: { labelSelector: { tier: "x" } } });
    assert.deepEqual(list.items.map((p) => p.id), [other]);
    list = await d.cri.runtime.listPodSandbox({ filter: { id: id.slice(0, 12) } });
    assert.deepEqual(list.items.map((p) => p.id), [id]);
    assert.equal((await d.cri.runtime.podSandboxStatus({ podSandboxId: id.slice(0, 10) })).status!.id, id);
    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    const s = await inspect(id);
    assert.equal(s.status.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(s.status.network!.ip, "");
    assert.equal(s.status.metadata!.name, "twice");
    assert.equal(s.status.labels.app, "twice");
    assert.ok(s.status.createdAt > BigInt(Date.now() - 60_000) * 1_000_000n);
    list = await d.cri.runtime.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_NOTREADY } } });
    assert.deepEqual(list.items.map((p) => p.id), [id]);
    list = await d.cri.runtime.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_READY } } });
    assert.deepEqual(list.items.map((p) => p.id), [other]);
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
    await d.cri.runtime.removePodSandbox({ podSandboxId: id });
    await d.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await assert.rejects(d.cri.runtime.podSandboxStatus({ podSandboxId: id }), rpcError(status.NOT_FOUND, /not found/));
    // Remove without Stop first tears everything down too
    await d.cri.runtime.removePodSandbox({ podSandboxId: other });
    assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
  });

  test("a failing CNI plugin makes RunPodSandbox fail cleanly, leaving nothing behind", async () => {
    const plugin = path.join(dir, "bin", "berth-test-refuse");
    await writeFile(plugin, `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"1.0.0","code":107,"msg":"berth test plugin refuses","details":"on purpose"}'; echo "refusing $CNI_CONTAINERID" >&2; exit 1 ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
esac
exit 0
`);
    await chmod(plugin, 0o755);
    const failing = path.join(dir, "cni", "05-refuse.conflist");
    await writeFile(failing, JSON.stringify({
      cniVersion: "1.0.0", name: "refuse-net",
      plugins: [
        { type: "bridge", bridge: BRIDGE, isGateway: true, ipam: { type: "host-local", dataDir: path.join(dir, "ipam"), ranges: [[{ subnet: SUBNET }]] } },
        { type: "berth-test-refuse" },
      ],
    }));
    try {
      const addresses = async () => (await filesUnder(path.join(dir, "ipam"))).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f));
      const before = await addresses();
      await waitFor("the failing network to become the pod network", async () => {
        try {
          await removePod(await run("doomed-probe"));
          return false;
        } catch (err) {
          return /refuse-net/.test((err as { details: string }).details);
        }
      });
      await assert.rejects(run("doomed"), rpcError(status.INTERNAL, /set up pod network.*refuse-net.*berth test plugin refuses: on purpose \(CNI error code 107\); stderr: refusing [0-9a-f]{64}/));
      assert.deepEqual((await d.cri.runtime.listPodSandbox({})).items, []);
      assert.deepEqual(await bridgePorts(BRIDGE), []);
      assert.deepEqual(await mountsUnder(d.state), []);
      assert.deepEqual(await filesUnder(d.layout.pins), []);
      assert.deepEqual(await filesUnder(d.layout.pods), []);
      assert.deepEqual((await filesUnder(d.layout.sandboxRecords)).filter((f) => f.endsWith(".json")), []);
      assert.deepEqual(await filesUnder(d.layout.cniResults), []);
      assert.deepEqual(await addresses(), before, "host-local released the address");
    } finally {
      await rm(failing, { force: true });
    }
    // the good network is back in use, and the failed name can be used again
    const id = await waitFor("the bridge network to be back", () => run("doomed").catch(() => undefined));
    await removePod(id);
  });

  test("20 pods created and removed leave no netns pin, mount, bridge port, iptables rule or file", async () => {
    const ids: string[] = [];
    const latencies: number[] = [];
    const sequential: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const id = await run(`seq-${i}`);
      sequential.push(performance.now() - t0);
      const t1 = performance.now();
      await removePod(id);
      sequential.push(-(performance.now() - t1));
    }
    const runs = sequential.filter((x) => x > 0).sort((a, b) => a - b);
    const removes = sequential.filter((x) => x < 0).map((x) => -x).sort((a, b) => a - b);
    process.stderr.write(`# one at a time: RunPodSandbox median ${runs[2]!.toFixed(0)} ms, Stop+Remove median ${removes[2]!.toFixed(0)} ms\n`);
    for (let batch = 0; batch < 4; batch++) {
      ids.push(...(await Promise.all(Array.from({ length: 5 }, async (_v, i) => {
        const t0 = performance.now();
        const id = await run(`many-${batch}-${i}`, { portMappings: [{ containerPort: 80, hostPort: 18010 + batch * 5 + i }] });
        latencies.push(performance.now() - t0);
        return id;
      }))));
    }
    assert.equal(new Set(ids).size, 20);
    assert.equal((await bridgePorts(BRIDGE)).length, 20);
    assert.equal((await d.cri.runtime.listPodSandbox({ filter: { state: { state: PodSandboxState.SANDBOX_READY } } })).items.length, 20);
    const removeStart = performance.now();
    await Promise.all(ids.map((id) => removePod(id)));
    const removeMs = performance.now() - removeStart;
    latencies.sort((a, b) => a - b);
    process.stderr.write(`# RunPodSandbox latency (5 in parallel): median ${latencies[10]!.toFixed(0)} ms, max ${latencies[19]!.toFixed(0)} ms; stop+remove of 20 (parallel): ${removeMs.toFixed(0)} ms\n`);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
    assert.deepEqual(await mountsUnder(d.state), []);
    assert.deepEqual(await filesUnder(d.layout.pins), []);
    assert.deepEqual(await filesUnder(d.layout.pods), []);
    assert.deepEqual(await iptablesRulesFor(ids), []);
    assert.deepEqual(await filesUnder(d.layout.cniResults), []);
    assert.deepEqual((await filesUnder(path.join(dir, "ipam"))).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f)), []);
  });

  test("pods survive a berthd restart; one whose netns pin vanished comes back NOTREADY and removable", async () => {
    const keep = await run("keep");
    const lose = await run("lose");
    const loseNs = (await inspect(lose)).info.netNamespacePath;
    await d.stop();
    // a reboot would drop the pins; drop one by hand
    assert.equal((await sh("umount", [loseNs])).code, 0);
    d = await d.restart();
    assert.equal((await inspect(keep)).status.state, PodSandboxState.SANDBOX_READY);
    assert.equal((await inspect(lose)).status.state, PodSandboxState.SANDBOX_NOTREADY);
    // names are still reserved after the restart
    await assert.rejects(d.cri.runtime.runPodSandbox({ config: { ...podConfig("x"), metadata: (await inspect(keep)).status.metadata } }), rpcError(status.ALREADY_EXISTS, /reserved/));
    await removePod(lose);
    await removePod(keep);
    assert.deepEqual(await iptablesRulesFor([keep, lose]), []);
    assert.deepEqual(await bridgePorts(BRIDGE), []);
    assert.deepEqual(await mountsUnder(d.state), []);
    await assert.rejects(stat(loseNs), /ENOENT/);
  });
});
