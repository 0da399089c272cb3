// The streaming lists (cri-api v0.36, KEP-5825): StreamPodSandboxes, StreamContainers,
// StreamContainerStats, StreamPodSandboxStats and StreamImages answer what the unary list
// answers (the same back-end call and filter), in batches. A batch goes out only once the one
// before it has been taken by the transport, and the caller is checked between batches, so a
// client that is slow or gone holds back (stats: stops) the work instead of piling it up.
import type { ContainerStats, PodSandboxStats } from "../gen/api.js";
import type { StreamCall } from "../grpc/server.js";
import type { ImageStore } from "../image/types.js";
import type { Logger } from "../log.js";
import type { Containers } from "./container.js";
import { containerListFilter, toContainerItem } from "./container-status.js";
import { listImages } from "./image.js";
import { bytesOf, encodeContainer, encodeImage, encodePod } from "./list-encoding.js";
import { encodeContainerStats, encodePodStats } from "./stats-encoding.js";
import { serverStream, type RuntimeHandlers, type ImageHandlers } from "./rpc.js";
import { sandboxFilter, toListItem, type PodSandboxes } from "./sandbox.js";
import type { Stats } from "./stats.js";

/**
 * At most this many items per message: kubelet's list sizes (a few hundred per node) come in a
 * handful of messages, and stats collection stops within one batch of a cancel.
 */
export const BATCH_ITEMS = 100;
/** And about this many bytes: items with large labels or annotations stay far below gRPC's 16 MiB message limit. */
export const BATCH_BYTES = 1024 * 1024;

export type Call = StreamCall<unknown, unknown>;

/** Writes `msg`; true once the transport has taken it, false when the caller is gone first. */
function send(call: Call, msg: unknown): Promise<boolean> {
  if (call.cancelled) return Promise.resolve(false);
  return new Promise((resolve) => {
    const gone = () => resolve(false);
    call.once("cancelled", gone);
    call.write(msg, () => {
      call.off("cancelled", gone);
      resolve(!call.cancelled);
    });
  });
}

/**
 * Sends the items of `chunks` (each chunk produced only after the one before is sent) in
 * messages of at most BATCH_ITEMS items and about BATCH_BYTES.
 */
export async function sendBatches<T extends object>(
  call: Call, log: Logger, method: string,
  chunks: Iterable<T[]> | AsyncIterable<T[]>, encode: (item: T) => Uint8Array, wrap: (items: T[]) => unknown,
): Promise<void> {
  let sent = 0;
  let batch: T[] = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length === 0) return true;
    const ok = await send(call, wrap(batch));
    if (ok) sent += batch.length;
    batch = [];
    bytes = 0;
    return ok;
  };
  for await (const chunk of chunks) {
    for (const item of chunk) {
      // Measuring encodes the item once; the response serializer reuses those bytes (list-encoding.ts).
      const size = bytesOf(item, encode).length + 6;
      if (batch.length >= BATCH_ITEMS || (batch.length > 0 && bytes + size > BATCH_BYTES)) {
        if (!(await flush())) return stopped(log, method, sent);
      }
      batch.push(item);
      bytes += size;
    }
    if (!(await flush())) return stopped(log, method, sent);
  }
  if (log.isLevelEnabled("debug")) log.debug({ method, items: sent }, "stream list sent");
}

function stopped(log: Logger, method: string, sent: number): void {
  log.debug({ method, items: sent }, "stream list stopped: the caller is gone");
}

/** `ids` a batch at a time through `of`, each slice collected only when asked for. */
export async function* slices<T>(ids: string[], of: (ids: string[]) => Promise<T[]>): AsyncGenerator<T[]> {
  for (let i = 0; i < ids.length; i += BATCH_ITEMS) yield await of(ids.slice(i, i + BATCH_ITEMS));
}

export function listStreamHandlers(pods: PodSandboxes, containers: Containers, stats: Stats, log: Logger): Pick<RuntimeHandlers,
  "streamPodSandboxes" | "streamContainers" | "streamContainerStats" | "streamPodSandboxStats"> {
  return {
    streamPodSandboxes: serverStream(log, "StreamPodSandboxes", async (req, call) =>
      sendBatches(call as Call, log, "StreamPodSandboxes", [pods.list(sandboxFilter(req.filter)).map(toListItem)], encodePod, (podSandboxes) => ({ podSandboxes }))),
    streamContainers: serverStream(log, "StreamContainers", async (req, call) =>
      sendBatches(call as Call, log, "StreamContainers", [containers.list(containerListFilter(req.filter)).map(toContainerItem)], encodeContainer, (items) => ({ containers: items }))),
    streamContainerStats: serverStream(log, "StreamContainerStats", async (req, call) =>
      sendBatches<ContainerStats>(call as Call, log, "StreamContainerStats", slices(await stats.containerStatsIds(req.filter), (ids) => stats.containerStatsOf(ids)),
        encodeContainerStats, (containerStats) => ({ containerStats }))),
    streamPodSandboxStats: serverStream(log, "StreamPodSandboxStats", async (req, call) =>
      sendBatches<PodSandboxStats>(call as Call, log, "StreamPodSandboxStats", slices(stats.podStatsIds(req.filter), (ids) => stats.podStatsOf(ids)),
        encodePodStats, (podSandboxStats) => ({ podSandboxStats }))),
  };
}

export function imageStreamHandlers(store: ImageStore, log: Logger): Pick<ImageHandlers, "streamImages"> {
  return {
    streamImages: serverStream(log, "StreamImages", async (req, call) =>
      sendBatches(call as Call, log, "StreamImages", [await listImages(store, req.filter)], encodeImage, (images) => ({ images }))),
  };
}
