// Attach through conmon's attach socket (SOCK_SEQPACKET, one packet per read or write) and
// its control fifo (window size): the container's own stdio, relayed to a streaming session.
import type { Socket } from "node:net";
import type { Readable } from "node:stream";
import { wrap } from "../../errors.js";
import type { Logger } from "../../log.js";
import { connectSeqpacket, fdSocket } from "../../native/native.js";
import type { StreamIO, TerminalSize } from "../stream-io.js";
import { resizeTerminal } from "./conmon.js";

/** conmon reads attach input in 32 KiB packets; smaller packets are never cut. */
const ATTACH_PACKET = 8192;
/** conmon's attach socket prefixes every output packet with the pipe it came from. */
const ATTACH_STDOUT = 2;
const ATTACH_STDERR = 3;

export interface AttachTarget {
  id: string;
  /** The container's own process has a terminal (attach sees one merged stream). */
  tty: boolean;
  /** Closing the attach input closes the container's stdin. */
  stdinOnce: boolean;
  /** conmon's attach socket and control fifo (in the bundle). */
  socket: string;
  ctl: string;
}

/** Relays a container's stdio until conmon closes the socket or the client goes; the container keeps running. */
export async function attachConmon(c: AttachTarget, io: StreamIO, log: Logger): Promise<void> {
  let sock: Socket;
  try {
    sock = fdSocket(connectSeqpacket(c.socket));
  } catch (err) {
    throw wrap(`connect to conmon's attach socket ${c.socket}`, err);
  }
  sock.on("error", (err) => log.debug({ container: c.id, err: err.message }, "attach socket error"));
  const resize = (s: TerminalSize) => void resizeTerminal(c.ctl, s.height, s.width).catch((err) =>
    log.debug({ err: (err as Error).message }, "resize through conmon's control fifo failed"));
  if (c.tty) {
    if (io.resize.latest) resize(io.resize.latest);
    io.resize.on("resize", resize);
  }
  // Each read is one packet: [pipe byte][data]. With a tty, everything arrives as stdout.
  sock.on("data", (packet: Buffer) => {
    if (packet.length < 1) return;
    const to = packet[0] === ATTACH_STDERR ? io.stderr ?? (c.tty ? io.stdout : undefined) : packet[0] === ATTACH_STDOUT ? io.stdout : undefined;
    if (to && !to.destroyed && !to.write(packet.subarray(1))) {
      sock.pause();
      to.once("drain", () => sock.resume());
      to.once("close", () => sock.resume());
    }
  });
  const pumpStdin = async (stdin: Readable) => {
    for await (const chunk of stdin) {
      const b = chunk as Buffer;
      for (let off = 0; off < b.length; off += ATTACH_PACKET) {
        if (sock.destroyed) return;
        // One write in flight at a time, so libuv never merges two into one packet.
        await new Promise<void>((resolve) => sock.write(b.subarray(off, off + ATTACH_PACKET), () => resolve()));
      }
    }
    // Closing our input closes the container's stdin only for stdin_once containers.
    if (c.stdinOnce && !c.tty && !sock.destroyed) sock.end();
  };
  if (io.stdin) void pumpStdin(io.stdin).catch(() => undefined);
  try {
    await new Promise<void>((resolve) => {
      const done = () => resolve();
      sock.once("end", done);
      sock.once("close", done);
      if (io.signal.aborted) done();
      else io.signal.addEventListener("abort", done, { once: true });
    });
  } finally {
    io.resize.off("resize", resize);
    // Detaching closes only our connection: the container keeps running.
    sock.destroy();
  }
}
