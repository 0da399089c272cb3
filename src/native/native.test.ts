import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync } from "node:fs";
import { describe, test } from "node:test";
import { connectInNetns, connectSeqpacket, fdSocket, openPty, setWindowSize } from "./native.js";

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
