// Exec, attach and port-forward into real containers (runc + conmon) through a real berthd:
// this repo's own SPDY and WebSocket clients, then the real crictl (env CRICTL).
// Resources: bridge bstr1, 10.91.1.0/24, cgroup parent /berth-test-stream, host ports 18220-18229.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { ContainerState } from "../src/gen/api.js";
import { startBerthd, waitFor, type Berthd } from "./harness/berthd.js";
import { removeCgroupParent } from "./harness/leaks.js";
import { busyboxEntries, pushImage } from "./harness/images.js";
import { startRegistry, type TestRegistry } from "./harness/registry.js";
import { CRICTL, CRICTL_SKIP, crictlArgs, stopCrictl } from "./harness/crictl.js";
import { openExecStreams, SpdyClient, type ExecStreams } from "./harness/spdy-client.js";
import { ChannelClient } from "./harness/ws-client.js";
import { deleteBridge, podConfig, sh, writeBridgeConflist } from "./sandbox-net.js";

const BRIDGE = "bstr1";
const SUBNET = "10.91.1.0/24";
const CGROUP_PARENT = "/berth-test-stream";
const APPLETS = ["sh", "cat", "echo", "sleep", "true", "stty", "httpd", "mkdir", "ps", "printf", "head", "seq", "wc"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Host pids whose command line is exactly `argv` (processes inside containers are host processes too). */
async function hostPidsRunning(argv: string[]): Promise<number[]> {
  const want = argv.join("\0");
  const out: number[] = [];
  for (const p of await readdir("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = (await readFile(`/proc/${p}/cmdline`, "utf8").catch(() => "")).replace(/\0$/, "");
    if (cmd === want) out.push(Number(p));
  }
  return out;
}

function openExec(url: string, want: { stdin?: boolean; stdout?: boolean; stderr?: boolean; resize?: boolean }): Promise<ExecStreams> {
  return openExecStreams(url, ["v4.channel.k8s.io", "v3.channel.k8s.io"], want);
}

function crictl(d: Berthd, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(CRICTL!, [...crictlArgs(d.socket), "--timeout", "20s", ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (b: Buffer) => (out += b));
    p.stderr.on("data", (b: Buffer) => (out += b));
    const t = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    p.once("exit", (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
    if (opts.input !== undefined) p.stdin.end(opts.input);
    else p.stdin.end();
  });
}

describe("streaming into containers through berthd", () => {
  let reg: TestRegistry;
  let d: Berthd;
  let image: string;
  let pod: { podSandboxId: string; cfg: Record<string, unknown> };
  let seq = 0;

  before(async () => {
    reg = await startRegistry();
    await pushImage(reg, "stream/busybox", { layers: [{ entries: await busyboxEntries(APPLETS) }], config: { Cmd: ["sh"], Env: ["PATH=/bin"] } }, ["1"]);
    image = `${reg.host}/stream/busybox:1`;
    d = await startBerthd({ config: `[cni]\nplugin_timeout = "20s"\n` });
    await writeBridgeConflist(d.dir, BRIDGE, SUBNET);
    await waitFor("NetworkReady", async () => (await d.cri.runtime.status({})).status!.conditions.find((c) => c.type === "NetworkReady")?.status);
    await d.cri.image.pullImage({ image: { image } });
    const cfg = podConfig("stream", { linux: { cgroupParent: CGROUP_PARENT } });
    pod = { podSandboxId: (await d.cri.runtime.runPodSandbox({ config: cfg as never })).podSandboxId, cfg };
  });

  after(async () => {
    await d?.cleanup({ removePods: true });
    await reg?.stop();
    await deleteBridge(BRIDGE);
    await removeCgroupParent(CGROUP_PARENT);
  });

  const run = async (over: Record<string, unknown>) => {
    const name = `s${++seq}`;
    const { containerId } = await d.cri.runtime.createContainer({
      podSandboxId: pod.podSandboxId,
      sandboxConfig: pod.cfg as never,
      config: { metadata: { name }, image: { image }, logPath: `${name}.log`, ...over } as never,
    });
    await d.cri.runtime.startContainer({ containerId });
    return containerId;
  };
  const state = async (id: string) => (await d.cri.runtime.containerStatus({ containerId: id })).status!.state;
  const execUrl = async (containerId: string, cmd: string[], o: { tty?: boolean; stdin?: boolean } = {}) =>
    (await d.cri.runtime.exec({ containerId, cmd, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: true, stderr: !o.tty })).url;

  let sleeper: string;
  test("exec without a tty: stdout and stderr apart, exit code on the error stream", async () => {
    sleeper = await run({ command: ["sleep", "100000"] });
    let e = await openExec(await execUrl(sleeper, ["sh", "-c", "echo out; echo err >&2; exit 42"]), { stdout: true, stderr: true });
    await Promise.all([e.error.done(), e.stdout!.done(), e.stderr!.done()]);
    assert.equal(e.stdout!.text(), "out\n");
    assert.equal(e.stderr!.text(), "err\n");
    const st = JSON.parse(e.error.text());
    assert.equal(st.reason, "NonZeroExitCode");
    assert.deepEqual(st.details.causes, [{ reason: "ExitCode", message: "42" }]);
    e = await openExec(await execUrl(sleeper, ["true"]), { stdout: true, stderr: true });
    await e.error.done();
    assert.deepEqual(JSON.parse(e.error.text()), { metadata: {}, status: "Success" });
  });

  test("exec with stdin: what goes in comes back out; EOF ends the command", async () => {
    const e = await openExec(await execUrl(sleeper, ["sh", "-c", "cat; echo end"], { stdin: true }), { stdin: true, stdout: true, stderr: true });
    const big = "0123456789".repeat(20_000);
    e.stdin!.write("hello container\n");
    await e.stdout!.waitFor(/hello container\n/);
    e.stdin!.end(big);
    await e.error.done();
    await e.stdout!.done();
    assert.equal(e.stdout!.text(), `hello container\n${big}end\n`);
  });

  test("exec with a tty: resize reaches the container's terminal", async () => {
    const e = await openExec(await execUrl(sleeper, ["sh", "-c", "read a; stty size; read b; stty size"], { tty: true, stdin: true }), { stdin: true, stdout: true, resize: true });
    e.resize!.write(JSON.stringify({ Width: 100, Height: 30 }));
    await sleep(300);
    e.stdin!.write("\r");
    await e.stdout!.waitFor(/30 100/);
    e.resize!.write(JSON.stringify({ Width: 120, Height: 40 }));
    await sleep(300);
    e.stdin!.write("\r");
    await e.error.done();
    assert.match(e.stdout!.text(), /30 100[\s\S]*40 120/);
    assert.equal(JSON.parse(e.error.text()).status, "Success");
  });

  test("exec over WebSocket v5 in a container", async () => {
    const ws = await ChannelClient.connect(await execUrl(sleeper, ["sh", "-c", "cat; exit 9"], { stdin: true }), ["v5.channel.k8s.io"]);
    ws.send(0, "via websocket\n");
    await ws.waitFor(1, /via websocket/);
    ws.closeChannel(0);
    await ws.waitClose();
    assert.deepEqual(JSON.parse(ws.text(3)).details.causes, [{ reason: "ExitCode", message: "9" }]);
  });

  test("a client that disconnects mid-exec leaves no process in the container", async () => {
    for (const [tty, secs] of [[false, "3001"], [true, "3002"]] as const) {
      const e = await openExec(await execUrl(sleeper, ["sh", "-c", `echo started; exec sleep ${secs}`], { tty, stdin: true }), { stdin: true, stdout: true, stderr: !tty, resize: tty });
      await e.stdout!.waitFor(/started/);
      await waitFor("the exec'd process", async () => (await hostPidsRunning(["sleep", secs])).length === 1);
      e.c.close();
      await waitFor(`sleep ${secs} to go (tty=${tty})`, async () => (await hostPidsRunning(["sleep", secs])).length === 0, 10_000);
    }
    assert.equal(await state(sleeper), ContainerState.CONTAINER_RUNNING);
  });

  test("attach to a container printing a counter; detaching leaves it running", async () => {
    const counter = await run({ command: ["sh", "-c", "i=0; while true; do echo count $i; i=$((i+1)); sleep 0.2; done"] });
    const { url } = await d.cri.runtime.attach({ containerId: counter, stdin: false, tty: false, stdout: true, stderr: true });
    const e = await openExec(url, { stdout: true, stderr: true });
    const text = await e.stdout!.waitFor(/count \d+\n[\s\S]*count \d+\n[\s\S]*count \d+\n/);
    const nums = [...text.matchAll(/count (\d+)/g)].map((m) => Number(m[1]));
    for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1]! + 1);
    e.c.close();
    await sleep(500);
    assert.equal(await state(counter), ContainerState.CONTAINER_RUNNING);
    // And a second attach still works.
    const again = await openExec((await d.cri.runtime.attach({ containerId: counter, stdin: false, tty: false, stdout: true, stderr: true })).url, { stdout: true, stderr: true });
    await again.stdout!.waitFor(/count \d+/);
    again.c.close();
  });

  test("attach with stdin to a shell: commands run, output comes back (as critest does)", async () => {
    const shell = await run({ command: ["sh"], stdin: true, stdinOnce: false });
    const { url } = await d.cri.runtime.attach({ containerId: shell, stdin: true, tty: false, stdout: true, stderr: true });
    const e = await openExec(url, { stdin: true, stdout: true, stderr: true });
    e.stdin!.write("echo -n hello\n");
    await e.stdout!.waitFor(/^hello$/);
    e.stdin!.write("echo to-stderr >&2\n");
    await e.stderr!.waitFor(/to-stderr/);
    e.c.close();
    await sleep(300);
    assert.equal(await state(shell), ContainerState.CONTAINER_RUNNING);
  });

  test("attach to a tty container: resize goes through conmon's control fifo", async () => {
    const tty = await run({ command: ["sh"], stdin: true, tty: true });
    const { url } = await d.cri.runtime.attach({ containerId: tty, stdin: true, tty: true, stdout: true, stderr: false });
    const e = await openExec(url, { stdin: true, stdout: true, resize: true });
    e.resize!.write(JSON.stringify({ Width: 123, Height: 45 }));
    await sleep(300);
    e.stdin!.write("stty size\r");
    await e.stdout!.waitFor(/45 123/);
    e.c.close();
  });

  test("attach ends with Success when the container exits", async () => {
    const short = await run({ command: ["sh", "-c", "sleep 1; echo bye"] });
    const e = await openExec((await d.cri.runtime.attach({ containerId: short, stdin: false, tty: false, stdout: true, stderr: true })).url, { stdout: true, stderr: true });
    await e.error.done();
    assert.match(e.stdout!.text(), /bye/);
    assert.deepEqual(JSON.parse(e.error.text()), { metadata: {}, status: "Success" });
  });

  test("Exec on a stopped container is FailedPrecondition", async () => {
    const gone = await run({ command: ["true"] });
    await waitFor("exit", async () => (await state(gone)) === ContainerState.CONTAINER_EXITED);
    await assert.rejects(d.cri.runtime.exec({ containerId: gone, cmd: ["true"], tty: false, stdin: false, stdout: true, stderr: false }), (e: { code: number }) => e.code === 9);
  });

  let web: string;
  test("port forward to busybox httpd serving in the pod", async () => {
    web = await run({ command: ["sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 80 -h /www"] });
    const body = await waitFor("httpd answering", async () => {
      const { url } = await d.cri.runtime.portForward({ podSandboxId: pod.podSandboxId, port: [80] });
      const c = await SpdyClient.connect(url, ["portforward.k8s.io"]);
      const err = await c.createStream({ streamType: "error", port: "80", requestID: "0" });
      const data = await c.createStream({ streamType: "data", port: "80", requestID: "0" });
      data.end("GET /index.html HTTP/1.0\r\n\r\n");
      await Promise.all([err.done(), data.done()]);
      c.close();
      return data.text().includes("hello-from-httpd") ? data.text() : undefined;
    });
    assert.match(body, /200 OK/);
  });

  test("sessions leave nothing behind: berthd's fds, runc processes and exec files return to where they were", async () => {
    const fds = async () => (await readdir(`/proc/${d.proc.pid}/fd`)).length;
    const runcs = async () => {
      let n = 0;
      for (const p of await readdir("/proc")) {
        if (/^\d+$/.test(p) && (await readFile(`/proc/${p}/comm`, "utf8").catch(() => "")).trim() === "runc") n++;
      }
      return n;
    };
    const round = async (i: number) => {
      const tty = i % 2 === 0;
      const e = await openExec(await execUrl(sleeper, ["sh", "-c", "echo x; sleep 30"], { tty, stdin: true }), { stdin: true, stdout: true, stderr: !tty, resize: tty });
      await e.stdout!.waitFor(/x/);
      e.c.close();
      const a = await openExec((await d.cri.runtime.attach({ containerId: sleeper, stdin: false, tty: false, stdout: true, stderr: true })).url, { stdout: true, stderr: true });
      a.c.close();
      const pf = await SpdyClient.connect((await d.cri.runtime.portForward({ podSandboxId: pod.podSandboxId, port: [80] })).url, ["portforward.k8s.io"]);
      const err = await pf.createStream({ streamType: "error", port: "80", requestID: "0" });
      const data = await pf.createStream({ streamType: "data", port: "80", requestID: "0" });
      data.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await data.waitFor(/hello-from-httpd/);
      void err;
      pf.close();
    };
    await round(0);
    await sleep(1500);
    const before = { fds: await fds(), runcs: await runcs() };
    for (let i = 1; i <= 10; i++) await round(i);
    await waitFor("fds back to where they were", async () => (await fds()) <= before.fds, 15_000).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${before.fds} before, ${await fds()} now`);
    });
    await waitFor("no runc exec left", async () => (await runcs()) <= before.runcs, 15_000);
    await waitFor("no exec'd sleep left", async () => (await hostPidsRunning(["sleep", "30"])).length === 0, 15_000);
    assert.deepEqual(await readdir(`${d.state}/exec`), []);
  });

  test("crictl exec -i with piped stdin", { skip: CRICTL_SKIP }, async () => {
    const r = await crictl(d, ["exec", "-i", sleeper, "sh", "-c", "cat; echo done"], { input: "piped into crictl\n" });
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, "piped into crictl\ndone\n");
    // crictl (1.29) exits 1 and names the command's exit code.
    const f = await crictl(d, ["exec", sleeper, "sh", "-c", "exit 7"]);
    assert.equal(f.code, 1, f.out);
    assert.match(f.out, /command terminated with exit code 7/);
  });

  test("crictl exec -it under a pty", { skip: CRICTL_SKIP }, async () => {
    // script(1) gives crictl a terminal, as a person at a shell would.
    const cmd = `${CRICTL} ${crictlArgs(d.socket).join(" ")} exec -it ${sleeper} sh -c 'stty size; echo tty-ok; exit 3'`;
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn("script", ["-qec", `stty rows 31 cols 97; ${cmd}`, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      p.stdout.on("data", (b: Buffer) => (out += b));
      p.stderr.on("data", (b: Buffer) => (out += b));
      p.once("exit", (code) => resolve({ code, out }));
      setTimeout(() => p.kill("SIGKILL"), 30_000).unref();
    });
    assert.match(r.out, /31 97/);
    assert.match(r.out, /tty-ok/);
    assert.match(r.out, /command terminated with exit code 3/);
  });

  test("crictl attach streams the counter", { skip: CRICTL_SKIP }, async () => {
    const counter = await run({ command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"] });
    const p = spawn(CRICTL!, [...crictlArgs(d.socket), "attach", counter], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (b: Buffer) => (out += b));
    p.stderr.on("data", (b: Buffer) => (out += b));
    await waitFor("ticks", async () => /tick \d+\n.*tick \d+\n/s.test(out), 10_000);
    await stopCrictl(p);
    assert.equal(await state(counter), ContainerState.CONTAINER_RUNNING);
  });

  test("crictl port-forward to httpd in the pod", { skip: CRICTL_SKIP }, async () => {
    const p = spawn(CRICTL!, [...crictlArgs(d.socket), "port-forward", pod.podSandboxId, "18220:80"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (b: Buffer) => (out += b));
    p.stderr.on("data", (b: Buffer) => (out += b));
    try {
      await waitFor("listening", async () => out.includes("Forwarding from"), 15_000);
      const body = await new Promise<string>((resolve, reject) => {
        http.get("http://127.0.0.1:18220/index.html", (res) => {
          let b = "";
          res.on("data", (x: Buffer) => (b += x));
          res.on("end", () => resolve(b));
        }).on("error", reject);
      });
      assert.equal(body, "hello-from-httpd\n");
    } finally {
      await stopCrictl(p);
    }
    void web;
  });
});
