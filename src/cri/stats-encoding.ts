// The stats answers' protobuf bytes, written straight into one reused buffer. A stats list is
// the largest answer kubelet polls for (about 650 B a container, 1 KB a pod) and every number in
// it changes between polls, so nothing can be kept but the attributes. The generated encoder
// builds a chunk list per nested message (six UInt64Value wrappers a memory block) and copies
// each level into its parent, about 10 us a container; here each message is written once, in
// place, and the few fields berth never fills (PSI, swap, io, windows) go through the generated
// encoder when present, so the bytes are the same either way (stats-encoding.test.ts).
import {
  ContainerAttributes, CpuUsage, IoUsage, PodSandboxAttributes, PsiStats, SwapUsage, WindowsPodSandboxStats,
  type ContainerStats, type FilesystemUsage, type LinuxPodSandboxStats, type MemoryUsage, type NetworkInterfaceUsage,
  type NetworkUsage, type PodSandboxStats, type ProcessUsage, type UInt64Value,
  type ContainerStatsResponse, type ListContainerStatsResponse, type ListPodSandboxStatsResponse, type PodSandboxStatsResponse,
  type StreamContainerStatsResponse, type StreamPodSandboxStatsResponse,
} from "../gen/api.js";
import { bytesOf, encodeRepeatedField1, varintLength, writeVarint } from "./list-encoding.js";

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * A protobuf writer over one buffer that is reused from answer to answer (an answer is copied
 * out at the end). A nested message reserves one length byte and moves its bytes along in the
 * rare case it is 128 bytes or longer; every tag here is one byte (field numbers below 16).
 */
class Writer {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;
  /** The last 64-bit value written and its varint: a container's timestamps are one value. */
  private lastBig = 0n;
  private readonly lastBigBytes = new Uint8Array(10);
  private lastBigLen = 0;

  start(): void {
    this.pos = 0;
  }

  /** A copy of what was written (the buffer is written over by the next answer). */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    // One very large answer grew it: not kept.
    if (this.buf.length > 4 * 1024 * 1024) this.buf = Buffer.allocUnsafe(64 * 1024);
    return out;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.pos++] = b;
  }

  /** A non-negative safe integer as a varint. */
  varint(n: number): void {
    this.room(10);
    this.pos = writeVarint(this.buf, this.pos, n);
  }

  /** A uint64 (or an int64, two's complement) as a varint. */
  bigVarint(v: bigint): void {
    if (v >= 0n && v <= MAX_SAFE) {
      this.varint(Number(v));
      return;
    }
    this.room(10);
    if (this.lastBigLen > 0 && v === this.lastBig) {
      this.buf.set(this.lastBigBytes.subarray(0, this.lastBigLen), this.pos);
      this.pos += this.lastBigLen;
      return;
    }
    const start = this.pos;
    const u = BigInt.asUintN(64, v);
    let lo = Number(u & 0xffffffffn);
    let hi = Number(u >> 32n);
    const buf = this.buf;
    let pos = this.pos;
    // Seven bits at a time across the two 32-bit halves.
    while (hi > 0 || lo > 0x7f) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    buf[pos++] = lo;
    this.pos = pos;
    this.lastBig = v;
    this.lastBigLen = pos - start;
    this.lastBigBytes.set(buf.subarray(start, pos));
  }

  /** Opens a length-delimited field: its tag and one reserved length byte; returns where the length goes. */
  begin(tag: number): number {
    this.room(2);
    this.buf[this.pos++] = tag;
    return this.pos++;
  }

  /** Closes the field `begin` opened. */
  end(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    const extra = varintLength(len) - 1;
    this.room(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos += extra;
    writeVarint(this.buf, at, len);
  }

  bytes(tag: number, b: Uint8Array): void {
    this.byte(tag);
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A string field; proto3 leaves an empty one out. */
  string(tag: number, s: string): void {
    if (s === "") return;
    const len = Buffer.byteLength(s, "utf8");
    this.byte(tag);
    this.varint(len);
    this.room(len);
    this.pos += this.buf.write(s, this.pos, len, "utf8");
  }

  /** An int64 field; proto3 leaves 0 out. */
  int64(tag: number, v: bigint): void {
    if (v === 0n) return;
    this.byte(tag);
    this.bigVarint(v);
  }

  /** A UInt64Value field (a message: present even when its value is 0). */
  u64(tag: number, v: UInt64Value | undefined): void {
    if (v === undefined) return;
    const at = this.begin(tag);
    if (v.value !== 0n) {
      this.byte(0x08);
      this.bigVarint(v.value);
    }
    this.end(at);
  }
}

const w = new Writer();

const encodeContainerAttributes = (a: NonNullable<ContainerStats["attributes"]>) => ContainerAttributes.encode(a).finish();
const encodePodAttributes = (a: NonNullable<PodSandboxStats["attributes"]>) => PodSandboxAttributes.encode(a).finish();

function cpu(tag: number, c: CpuUsage): void {
  const at = w.begin(tag);
  w.int64(0x08, c.timestamp);
  w.u64(0x12, c.usageCoreNanoSeconds);
  w.u64(0x1a, c.usageNanoCores);
  if (c.psi) w.bytes(0x22, PsiStats.encode(c.psi).finish());
  w.end(at);
}

function memory(tag: number, m: MemoryUsage): void {
  const at = w.begin(tag);
  w.int64(0x08, m.timestamp);
  w.u64(0x12, m.workingSetBytes);
  w.u64(0x1a, m.availableBytes);
  w.u64(0x22, m.usageBytes);
  w.u64(0x2a, m.rssBytes);
  w.u64(0x32, m.pageFaults);
  w.u64(0x3a, m.majorPageFaults);
  if (m.psi) w.bytes(0x42, PsiStats.encode(m.psi).finish());
  w.end(at);
}

function filesystem(tag: number, f: FilesystemUsage): void {
  const at = w.begin(tag);
  w.int64(0x08, f.timestamp);
  if (f.fsId) {
    const id = w.begin(0x12);
    w.string(0x0a, f.fsId.mountpoint);
    w.end(id);
  }
  w.u64(0x1a, f.usedBytes);
  w.u64(0x22, f.inodesUsed);
  w.end(at);
}

function containerStats(tag: number, s: ContainerStats): void {
  const at = w.begin(tag);
  containerStatsBody(s);
  w.end(at);
}

function containerStatsBody(s: ContainerStats): void {
  // A container's attributes are the same object from poll to poll (runtime/stats.ts): encoded once.
  if (s.attributes) w.bytes(0x0a, bytesOf(s.attributes, encodeContainerAttributes));
  if (s.cpu) cpu(0x12, s.cpu);
  if (s.memory) memory(0x1a, s.memory);
  if (s.writableLayer) filesystem(0x22, s.writableLayer);
  if (s.swap) w.bytes(0x2a, SwapUsage.encode(s.swap).finish());
  if (s.io) w.bytes(0x32, IoUsage.encode(s.io).finish());
}

function iface(tag: number, i: NetworkInterfaceUsage): void {
  const at = w.begin(tag);
  w.string(0x0a, i.name);
  w.u64(0x12, i.rxBytes);
  w.u64(0x1a, i.rxErrors);
  w.u64(0x22, i.txBytes);
  w.u64(0x2a, i.txErrors);
  w.end(at);
}

function network(tag: number, n: NetworkUsage): void {
  const at = w.begin(tag);
  w.int64(0x08, n.timestamp);
  if (n.defaultInterface) iface(0x12, n.defaultInterface);
  for (const i of n.interfaces) iface(0x1a, i);
  w.end(at);
}

function processUsage(tag: number, p: ProcessUsage): void {
  const at = w.begin(tag);
  w.int64(0x08, p.timestamp);
  w.u64(0x12, p.processCount);
  w.end(at);
}

function linuxPod(tag: number, l: LinuxPodSandboxStats): void {
  const at = w.begin(tag);
  if (l.cpu) cpu(0x0a, l.cpu);
  if (l.memory) memory(0x12, l.memory);
  if (l.network) network(0x1a, l.network);
  if (l.process) processUsage(0x22, l.process);
  for (const c of l.containers) containerStats(0x2a, c);
  if (l.io) w.bytes(0x32, IoUsage.encode(l.io).finish());
  w.end(at);
}

function podStats(tag: number, p: PodSandboxStats): void {
  const at = w.begin(tag);
  podStatsBody(p);
  w.end(at);
}

function podStatsBody(p: PodSandboxStats): void {
  if (p.attributes) w.bytes(0x0a, bytesOf(p.attributes, encodePodAttributes));
  if (p.linux) linuxPod(0x12, p.linux);
  if (p.windows) w.bytes(0x1a, WindowsPodSandboxStats.encode(p.windows).finish());
}

function repeatedContainers(items: ContainerStats[]): Buffer {
  w.start();
  for (const s of items) containerStats(0x0a, s);
  return w.finish();
}

function repeatedPods(items: PodSandboxStats[]): Buffer {
  w.start();
  for (const p of items) podStats(0x0a, p);
  return w.finish();
}

/** One ContainerStats message's bytes (the streams measure each item for their batches, list-stream.ts). */
export function encodeContainerStats(s: ContainerStats): Uint8Array {
  w.start();
  containerStatsBody(s);
  return w.finish();
}

/** One PodSandboxStats message's bytes. */
export function encodePodStats(p: PodSandboxStats): Uint8Array {
  w.start();
  podStatsBody(p);
  return w.finish();
}

// Each response below is its one stats field (field 1), repeated or not. The streams' batches were
// measured item by item, and those bytes are framed as they are.
export const serializeListContainerStats = (res: ListContainerStatsResponse) => repeatedContainers(res.stats);
export const serializeContainerStats = (res: ContainerStatsResponse) => repeatedContainers(res.stats ? [res.stats] : []);
export const serializeListPodSandboxStats = (res: ListPodSandboxStatsResponse) => repeatedPods(res.stats);
export const serializePodSandboxStats = (res: PodSandboxStatsResponse) => repeatedPods(res.stats ? [res.stats] : []);
export const serializeStreamContainerStats = (res: StreamContainerStatsResponse) => encodeRepeatedField1(res.containerStats, encodeContainerStats);
export const serializeStreamPodSandboxStats = (res: StreamPodSandboxStatsResponse) => encodeRepeatedField1(res.podSandboxStats, encodePodStats);
