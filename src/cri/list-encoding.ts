// ListContainers and ListPodSandbox answer with every item each time (kubelet relists every
// second), but an item changes only when its state does. The runtime hands out the same item
// object until then; here each object's protobuf bytes are kept (weakly) and a response is
// the items' bytes framed as field 1, the only field of both responses. The streaming lists'
// responses (list-stream.ts) are one field 1 too, and are framed the same way from the bytes
// their batching measured.
import {
  Container, ContainerStatus, ContainerStatusResponse, ImageStatusResponse, PodSandboxStatus, PodSandboxStatusResponse, Image, PodSandbox, PodSandboxMetrics, type StreamPodSandboxMetricsResponse,
  type ListContainersResponse, type ListPodSandboxResponse, type StreamContainersResponse,
  type StreamImagesResponse, type StreamPodSandboxesResponse,
} from "../gen/api.js";

const encoded = new WeakMap<object, Uint8Array>();

/** An item's encoded bytes, kept (weakly) for the response that carries it. */
export function bytesOf<T extends object>(item: T, encode: (item: T) => Uint8Array): Uint8Array {
  let b = encoded.get(item);
  if (!b) {
    b = encode(item);
    encoded.set(item, b);
  }
  return b;
}

/** The bytes a non-negative safe integer takes as a varint. */
export function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

/** Writes a non-negative safe integer as a varint at `pos` (room for 10 bytes is the caller's); returns the position after it. */
export function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n > 0x7fffffff) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

/**
 * A serializer that keeps each response object's bytes (weakly): a handler that answers with the
 * same object while nothing changed (Version, Status) is not encoded again.
 */
export function keptBytes<T extends object>(encode: (res: T) => Uint8Array): (res: T) => Buffer {
  return (res: T) => {
    const b = bytesOf(res, encode);
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  };
}

/** `items` as repeated message field 1 (tag 0x0a, length-delimited). */
export function encodeRepeatedField1<T extends object>(items: T[], encode: (item: T) => Uint8Array): Buffer {
  return framed([{ tag: 0x0a, parts: items.map((i) => bytesOf(i, encode)) }]);
}

/**
 * Each group's parts as length-delimited fields with the group's tag byte (field number < 16),
 * one after the other, then `rest` as is (a response's other fields, encoded by its generated
 * encoder). Protobuf readers take fields in any order.
 */
function framed(groups: Array<{ tag: number; parts: Uint8Array[] }>, rest?: Uint8Array): Buffer {
  let size = rest?.length ?? 0;
  for (const g of groups) for (const p of g.parts) size += 1 + varintLength(p.length) + p.length;
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for (const g of groups) {
    for (const p of g.parts) {
      out[off++] = g.tag;
      off = writeVarint(out, off, p.length);
      out.set(p, off);
      off += p.length;
    }
  }
  if (rest) out.set(rest, off);
  return out;
}

const encodeContainerStatus = (s: ContainerStatus) => ContainerStatus.encode(s).finish();
const encodePodStatus = (s: PodSandboxStatus) => PodSandboxStatus.encode(s).finish();

/**
 * ContainerStatusResponse with its status's bytes kept (toContainerStatus answers with the same
 * object while the container is unchanged); info (verbose only) is encoded each time.
 */
export function serializeContainerStatus(res: ContainerStatusResponse): Buffer {
  const rest = Object.keys(res.info).length > 0 ? ContainerStatusResponse.encode({ status: undefined, info: res.info }).finish() : undefined;
  return framed([{ tag: 0x0a, parts: res.status ? [bytesOf(res.status, encodeContainerStatus)] : [] }], rest);
}

/** PodSandboxStatusResponse: the pod's and its containers' status bytes kept, info and timestamp encoded each time. */
export function serializePodSandboxStatus(res: PodSandboxStatusResponse): Buffer {
  const rest = PodSandboxStatusResponse.encode({ status: undefined, info: res.info, containersStatuses: [], timestamp: res.timestamp }).finish();
  return framed([
    { tag: 0x0a, parts: res.status ? [bytesOf(res.status, encodePodStatus)] : [] },
    { tag: 0x1a, parts: res.containersStatuses.map((c) => bytesOf(c, encodeContainerStatus)) },
  ], rest);
}

/** ImageStatusResponse with the image's bytes kept (toCri answers with the same object while the image is unchanged). */
export function serializeImageStatus(res: ImageStatusResponse): Buffer {
  const rest = Object.keys(res.info).length > 0 ? ImageStatusResponse.encode({ image: undefined, info: res.info }).finish() : undefined;
  return framed([{ tag: 0x0a, parts: res.image ? [bytesOf(res.image, encodeImage)] : [] }], rest);
}

const encodeContainer = (c: Container) => Container.encode(c).finish();
const encodePod = (p: PodSandbox) => PodSandbox.encode(p).finish();

/**
 * encodeRepeatedField1 that remembers its last answer: kubelet relists every second, and while
 * no item changed (the same item objects, in the same order) the bytes are the same.
 */
function repeatedField1Memo<T extends object>(encode: (item: T) => Uint8Array): (items: T[]) => Buffer {
  let lastItems: T[] = [];
  let lastOut: Buffer | undefined;
  return (items: T[]) => {
    if (lastOut && items.length === lastItems.length && items.every((item, i) => item === lastItems[i])) return lastOut;
    lastOut = encodeRepeatedField1(items, encode);
    lastItems = items;
    return lastOut;
  };
}

const containersBytes = repeatedField1Memo(encodeContainer);
const podsBytes = repeatedField1Memo(encodePod);

export function serializeListContainers(res: ListContainersResponse): Buffer {
  return containersBytes(res.containers);
}

export function serializeListPodSandbox(res: ListPodSandboxResponse): Buffer {
  return podsBytes(res.items);
}

export const encodeImage = (i: Image) => Image.encode(i).finish();
export { encodeContainer, encodePod };

export const serializeStreamContainers = (res: StreamContainersResponse) => encodeRepeatedField1(res.containers, encodeContainer);
export const serializeStreamPodSandboxes = (res: StreamPodSandboxesResponse) => encodeRepeatedField1(res.podSandboxes, encodePod);
export const serializeStreamImages = (res: StreamImagesResponse) => encodeRepeatedField1(res.images, encodeImage);
export const encodePodMetrics = (p: PodSandboxMetrics) => PodSandboxMetrics.encode(p).finish();
export const serializeStreamPodSandboxMetrics = (res: StreamPodSandboxMetricsResponse) => encodeRepeatedField1(res.podSandboxMetrics, encodePodMetrics);
