import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import net from "node:net";
import { describe, test } from "node:test";
import { bindDatagram, connectInNetns, connectSeqpacket, countFds, fdSocket, idmapMount, recvDatagram, sendDatagram, mountFs, MS, openPty, pinNewNamespaces, pinNewUserNamespace, procStartTime, setWindowSize, signalNumber, signalProcess, spawnChild, unmountFs, watchExit } from "./native.js";

/** Runs `sh -c script` with fd 3 = fd; resolves with its stdout. */
function withFd3(script: string, fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", "inherit", fd] });
    let out = "";
    p.stdout!.on("data", (d: Buffer) => (out += d));
    p.once("error", reject);
    p.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${script}: exit ${code}`))));
  });
}

describe("berth native addon", () => {
  test("openPty + setWindowSize: a process on the slave sees the size", async () => {
    const { master, slave } = openPty();
    try {
      setWindowSize(master, 33, 111);
      assert.equal((await withFd3("stty size <&3", slave)).trim(), "33 111");
    } finally {
      closeSync(slave);
      closeSync(master);
    }
    assert.throws(() => setWindowSize(master, -1, 5), /0\.\.65535/);
  });

  test("fdSocket over a pty master: bytes written to the slave come out; closing the slave ends it", async () => {
    const { master, slave } = openPty();
    const term = fdSocket(master);
    let got = "";
    term.on("data", (d: Buffer) => (got += d.toString()));
    const closed = new Promise<void>((r) => term.once("close", () => r()));
    term.on("error", () => undefined);
    await withFd3("printf 'from the slave' >&3", slave);
    closeSync(slave);
    await closed;
    assert.equal(got, "from the slave");
  });

  test("errors name the path and the errno", async () => {
    assert.throws(() => connectSeqpacket("/nonexistent/attach"), (e: NodeJS.ErrnoException) => e.code === "ENOENT" && /nonexistent/.test(e.message));
    await assert.rejects(connectInNetns("/nonexistent/netns", 80), (e: NodeJS.ErrnoException) => e.code === "ENOENT" && /open network namespace/.test(e.message));
  });

  test("connectInNetns into this process's own namespace reaches a local listener", async () => {
    const net = await import("node:net");
    const srv = net.createServer((s) => s.end("hello from the listener"));
    await new Promise<void>((r) => srv.listen(18203, "127.0.0.1", () => r()));
    try {
      const s = await connectInNetns("/proc/self/ns/net", 18203);
      let got = "";
      s.on("data", (d: Buffer) => (got += d));
      await new Promise((r) => s.once("end", r));
      s.destroy();
      assert.equal(got, "hello from the listener");
      await assert.rejects(connectInNetns("/proc/self/ns/net", 18298), (e: NodeJS.ErrnoException) => e.code === "ECONNREFUSED");
    } finally {
      srv.close();
    }
  });
});

describe("berth native addon: mounts and namespace pins", () => {
  const mountOf = async (target: string) =>
    (await readFile("/proc/self/mountinfo", "utf8")).split("\n").map((l) => l.split(" ")).find((f) => f[4] === target);

  test("pinNewUserNamespace: maps written before the pin, net/uts owned by it, hostname set; idmapMount maps owners", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-native-"));
    const files = { user: path.join(dir, "user"), net: path.join(dir, "net"), uts: path.join(dir, "uts") };
    try {
      for (const f of Object.values(files)) await writeFile(f, "");
      await pinNewUserNamespace(files, "0 300000 1000\n", "0 310000 1000\n", "userns-host");
      const inside = await execa("nsenter", [`--user=${files.user}`, `--uts=${files.uts}`, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; hostname; id -u"]);
      assert.deepEqual(inside.stdout.split("\n").map((l) => l.trim().split(/\s+/).join(" ")), ["0 300000 1000", "0 310000 1000", "userns-host", "0"]);
      // The netns is owned by the new user namespace: its owner (NS_GET_USERNS) is the pinned one.
      const owner = await execa("lsns", ["-n", "-o", "NS", "-t", "user", "-p", String(process.pid)]);
      assert.notEqual((await stat(files.user)).ino, Number(owner.stdout.trim()));
      await mkdir(path.join(dir, "src"));
      await mkdir(path.join(dir, "dst"));
      await writeFile(path.join(dir, "src", "f"), "x");
      await idmapMount(path.join(dir, "src"), path.join(dir, "dst"), files.user);
      const st = await stat(path.join(dir, "dst", "f"));
      assert.deepEqual([st.uid, st.gid], [300000, 310000], "a file owned by 0 shows as the mapped root");
      assert.match((await mountOf(path.join(dir, "dst")))!.join(" "), /idmapped/);
      await assert.rejects(idmapMount(path.join(dir, "src"), path.join(dir, "dst"), path.join(dir, "src", "f")), (e: NodeJS.ErrnoException) => e.code === "EINVAL" || e.code === "EBADF");
    } finally {
      for (const t of [path.join(dir, "dst"), ...Object.values(files)]) await unmountFs(t).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("mountFs tmpfs with flags and data; unmountFs; a second unmount is EINVAL", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-native-"));
    try {
      await mountFs({ source: "shm", target: dir, fstype: "tmpfs", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: "mode=1777,size=65536" });
      const f = await mountOf(dir);
      assert.ok(f, "mounted");
      assert.match(f!.join(" "), /nosuid,nodev,noexec/);
      assert.match(f!.join(" "), / - tmpfs shm .*size=64k/);
      await unmountFs(dir);
      assert.equal(await mountOf(dir), undefined);
      await assert.rejects(unmountFs(dir), (e: NodeJS.ErrnoException) => e.code === "EINVAL" && e.message.includes(dir));
    } finally {
      await unmountFs(dir).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("overlay lowerdirs relative to cwd; berthd's own cwd is unchanged", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-native-"));
    const cwd = process.cwd();
    try {
      for (const d of ["l1", "l2", "upper", "work", "merged"]) await mkdir(path.join(dir, d));
      await writeFile(path.join(dir, "l1", "a"), "from l1");
      await writeFile(path.join(dir, "l2", "a"), "from l2");
      await writeFile(path.join(dir, "l2", "b"), "only l2");
      await mountFs({ source: "overlay", target: path.join(dir, "merged"), fstype: "overlay", data: `lowerdir=l1:l2,upperdir=${dir}/upper,workdir=${dir}/work`, cwd: dir });
      assert.equal(process.cwd(), cwd);
      assert.equal(await readFile(path.join(dir, "merged", "a"), "utf8"), "from l1");
      assert.equal(await readFile(path.join(dir, "merged", "b"), "utf8"), "only l2");
      await unmountFs(path.join(dir, "merged"));
      await assert.rejects(mountFs({ source: "overlay", target: path.join(dir, "merged"), fstype: "overlay", data: "lowerdir=nope", cwd: dir }),
        (e: NodeJS.ErrnoException) => e.code === "ENOENT" && /mount .*merged/.test(e.message));
    } finally {
      await unmountFs(path.join(dir, "merged")).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("unmountFs does not follow a symlink to a mount point", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-native-"));
    try {
      await mkdir(path.join(dir, "m"));
      await symlink(path.join(dir, "m"), path.join(dir, "link"));
      await mountFs({ source: "t", target: path.join(dir, "m"), fstype: "tmpfs" });
      await assert.rejects(unmountFs(path.join(dir, "link")));
      assert.ok(await mountOf(path.join(dir, "m")), "still mounted");
    } finally {
      await unmountFs(path.join(dir, "m")).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("pinNewNamespaces: new net and UTS namespaces with the hostname; berthd's own stay as they were", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-native-"));
    const ownNet = (await stat("/proc/self/ns/net")).ino;
    const ownHost = hostname();
    try {
      for (const k of ["net", "uts"]) await writeFile(path.join(dir, k), "");
      await pinNewNamespaces({ net: path.join(dir, "net"), uts: path.join(dir, "uts") }, "pinned-host");
      assert.notEqual((await stat(path.join(dir, "net"))).ino, ownNet);
      assert.equal((await stat("/proc/self/ns/net")).ino, ownNet);
      assert.equal(hostname(), ownHost);
      const r = await execa("nsenter", [`--uts=${path.join(dir, "uts")}`, `--net=${path.join(dir, "net")}`, "--", "sh", "-c", "hostname; ip -o link | wc -l"]);
      assert.deepEqual(r.stdout.split("\n"), ["pinned-host", "1"]);
      await assert.rejects(pinNewNamespaces({ net: path.join(dir, "missing") }, ""), (e: NodeJS.ErrnoException) => e.code === "ENOENT" && e.message.includes("missing"));
      await assert.rejects(pinNewNamespaces({}, ""), /at least one/);
    } finally {
      for (const k of ["net", "uts"]) await unmountFs(path.join(dir, k)).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("berth native addon: signalling a process by pid and start time", () => {
  test("signalProcess reaches only the process that started at that time", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once("exit", (_c, sig) => r(sig)));
    // Clock ticks after boot (src/proc.test.ts checks it against the TypeScript reader).
    const start = procStartTime(child.pid!);
    assert.match(start ?? "", /^\d+$/);
    assert.equal(signalProcess(child.pid!, String(Number(start) + 1), signalNumber("SIGTERM")!), false, "another start time: not signalled");
    assert.equal(child.exitCode, null);
    assert.equal(signalProcess(child.pid!, start!, signalNumber("TERM")!), true);
    assert.equal(await exited, "SIGTERM");
    assert.equal(signalProcess(child.pid!, start!, 15), false, "reaped: gone");
    assert.equal(procStartTime(child.pid!), undefined);
  });

  test("signalNumber takes names with or without SIG and numbers", () => {
    assert.equal(signalNumber("SIGKILL"), 9);
    assert.equal(signalNumber("quit"), 3);
    assert.equal(signalNumber("36"), 36);
    assert.equal(signalNumber("SIGNOPE"), undefined);
    assert.equal(signalNumber("99"), undefined);
  });
});

describe("berth native addon: exit watches (watchExit)", () => {
  /** Resolves true once `fired` is true, false after `ms`. */
  const within = async (fired: () => boolean, ms: number) => {
    for (const until = Date.now() + ms; Date.now() < until; ) {
      if (fired()) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return fired();
  };

  test("fires once the process exits, and once only; a pid with no process gives no watch", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    const reaped = new Promise((r) => child.once("exit", r));
    let calls = 0;
    assert.ok(watchExit(child.pid!, () => calls++));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(calls, 0, "not while it runs");
    child.kill("SIGKILL");
    assert.ok(await within(() => calls > 0, 2000), "fired after the kill");
    await reaped;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(calls, 1);
    assert.equal(watchExit(child.pid!, () => calls++), undefined, "reaped: no such process");
  });

  test("a zombie counts as exited (its parent never reaps it)", async () => {
    // sh starts a short sleep, then becomes a long sleep that never waits for it.
    const parent = spawn("sh", ["-c", "sleep 0.3 & echo $!; exec sleep 30"], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const pid = Number(await new Promise<string>((r) => parent.stdout!.once("data", (d: Buffer) => r(String(d).trim()))));
      let fired = false;
      assert.ok(watchExit(pid, () => (fired = true)));
      assert.ok(await within(() => fired, 3000), "fired when it became a zombie");
      assert.match(await readFile(`/proc/${pid}/stat`, "utf8"), /\) Z /, "still a zombie");
    } finally {
      parent.kill("SIGKILL");
    }
  });

  test("a cancelled watch never fires; cancelling twice is harmless", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    let fired = false;
    const cancel = watchExit(child.pid!, () => (fired = true))!;
    cancel();
    cancel();
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.equal(await within(() => fired, 300), false);
  });

  test("a watch does not keep the process running", async () => {
    const native = new URL("./native.js", import.meta.url).href;
    // pid 1 outlives the script: the script must still end by itself.
    const r = await execa(process.execPath, ["--input-type=module", "-e", `import { watchExit } from ${JSON.stringify(native)}; if (!watchExit(1, () => {})) process.exit(3);`], { timeout: 10_000, reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
  });
});

describe("berth native addon: spawnChild (posix_spawn)", () => {
  const readAll = (s: NodeJS.ReadableStream) => new Promise<string>((r) => {
    let o = "";
    s.on("data", (d: Buffer) => (o += d));
    s.on("end", () => r(o));
  });

  test("cwd, own session, an extra pipe at fd 3, a parent fd passed through, exit status", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-native-"));
    try {
      const log = await open(path.join(dir, "log"), "w");
      const c = spawnChild({
        file: "/bin/sh",
        args: ["-c", "pwd; echo $$ $(cut -d' ' -f6 /proc/$$/stat) >&3; echo to-log >&2; exit 4"],
        env: { PATH: "/bin:/usr/bin" },
        cwd: dir,
        setsid: true,
        stdio: ["ignore", "out", log.fd, "out"],
      });
      await log.close();
      const [out, fd3, exit] = await Promise.all([readAll(c.pipes[1]!), readAll(c.pipes[3]!), c.exited]);
      assert.equal(out.trim(), dir);
      const [pid, sid] = fd3.trim().split(" ");
      assert.equal(pid, String(c.pid));
      assert.equal(sid, String(c.pid), "session leader");
      assert.deepEqual(exit, { code: 4, signal: null });
      assert.equal(await readFile(path.join(dir, "log"), "utf8"), "to-log\n");
      assert.equal(c.kill("SIGKILL"), false, "gone");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("kill goes through the pidfd; a missing program throws at once", async () => {
    const c = spawnChild({ file: "/bin/sleep", args: ["30"], env: {}, stdio: ["ignore", "ignore", "ignore"] });
    assert.equal(c.kill("SIGTERM"), true);
    assert.deepEqual(await c.exited, { code: null, signal: "SIGTERM" });
    assert.throws(() => spawnChild({ file: "/nonexistent/x", args: [], env: {}, stdio: ["ignore", "ignore", "ignore"] }), /nonexistent\/x: No such file/);
    assert.throws(() => spawnChild({ file: "relative", args: [], env: {}, stdio: ["ignore", "ignore", "ignore"] }), /absolute file/);
  });
});

describe("berth native addon: unix datagrams (systemd's NOTIFY_SOCKET)", () => {
  test("path and abstract sockets: messages arrive whole and in order; none waiting is null", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "berth-dgram-"));
    try {
      for (const addr of [path.join(dir, "n.sock"), `@berth-native-test-${process.pid}`]) {
        const fd = bindDatagram(addr);
        try {
          assert.equal(recvDatagram(fd), null);
          sendDatagram(addr, "READY=1");
          sendDatagram(addr, "STATUS=two words\nSTOPPING=1");
          assert.equal(recvDatagram(fd), "READY=1");
          assert.equal(recvDatagram(fd), "STATUS=two words\nSTOPPING=1");
          assert.equal(recvDatagram(fd), null);
        } finally {
          closeSync(fd);
        }
      }
      assert.throws(() => sendDatagram(path.join(dir, "nobody.sock"), "READY=1"), /nobody\.sock: No such file/);
      assert.throws(() => sendDatagram(`/${"x".repeat(120)}`, "READY=1"), /under 108 bytes/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("descriptor counts for the metrics RPCs", () => {
  test("countFds: open descriptors and sockets of live processes; a gone pid counts nothing", async () => {
    const p = spawn("sh", ["-c", "exec 3<>/dev/null; exec sleep 30"], { stdio: ["ignore", "ignore", "ignore"] });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const one = await countFds([p.pid!]);
      assert.equal(one.fds, (await readdir(`/proc/${p.pid}/fd`)).length, "what /proc/PID/fd lists (fd 3 and those inherited)");
      assert.ok(one.fds >= 4);
      assert.equal(one.sockets, 0);
      const server = net.createServer();
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      try {
        const before = await countFds([process.pid]);
        const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
        await new Promise((r) => client.once("connect", r));
        const after = await countFds([process.pid]);
        client.destroy();
        assert.ok(after.sockets >= before.sockets + 1, `sockets ${before.sockets} -> ${after.sockets}`);
      } finally {
        server.close();
      }
      assert.deepEqual(await countFds([p.pid!, 0x3fffffff]), one);
    } finally {
      p.kill("SIGKILL");
    }
  });
});
