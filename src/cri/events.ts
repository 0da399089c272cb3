// GetContainerEvents (evented PLEG, KEP-3386): one stream per subscriber of the runtime's
// lifecycle events (runtime/events.ts), each carrying what kubelet's evented PLEG builds its pod
// status from: the pod's PodSandboxStatus and the ContainerStatus of every container of the pod,
// as PodSandboxStatus answers them. A pod's own events carry the pod's id as container_id, the
// way containerd sends them (kubelet drops its cache entry on the pod's CONTAINER_DELETED_EVENT).
import { ContainerEventResponse, ContainerEventType, type GetEventsRequest } from "../gen/api.js";
import type { StreamCall } from "../grpc/server.js";
import { NotFound, ResourceExhausted } from "../errors.js";
import type { Logger } from "../log.js";
import { MAX_QUEUED_BYTES, MAX_QUEUED_EVENTS, type EventBus, type LifecycleEvent, type LifecycleKind, type Rendering, type Subscription } from "../runtime/events.js";
import type { SandboxRecord } from "../runtime/sandbox.js";
import { serverStream, type RuntimeHandlers } from "./rpc.js";
import { toStatus, type PodContainerRecords } from "./sandbox.js";
import { toContainerStatus } from "./container-status.js";

const TYPES: Record<LifecycleKind, ContainerEventType> = {
  created: ContainerEventType.CONTAINER_CREATED_EVENT,
  started: ContainerEventType.CONTAINER_STARTED_EVENT,
  stopped: ContainerEventType.CONTAINER_STOPPED_EVENT,
  deleted: ContainerEventType.CONTAINER_DELETED_EVENT,
};

/** What an event's payload is built from. */
export interface EventState {
  pods: { get(id: string): SandboxRecord };
  containers: PodContainerRecords;
}

/** The encoded ContainerEventResponse for each event, built once when it is published (shared by every subscriber). */
export function containerEventRendering(state: EventState): Rendering<Uint8Array> {
  return {
    render(e: LifecycleEvent): Uint8Array {
      let pod: SandboxRecord | undefined;
      try {
        pod = state.pods.get(e.sandboxId);
      } catch (err) {
        if (!(err instanceof NotFound)) throw err;
      }
      // Like containerd: a pod already gone is sent without a status (kubelet relists for it).
      return ContainerEventResponse.encode({
        containerId: e.id,
        containerEventType: TYPES[e.kind],
        createdAt: e.at,
        podSandboxStatus: pod && toStatus(pod),
        containersStatuses: state.containers.statusesOf(e.sandboxId).map((i) => toContainerStatus(i.record, i.user)),
      }).finish();
    },
    sizeOf: (b) => b.length,
  };
}

/** GetContainerEvents' payloads are encoded already (containerEventRendering). */
export function serializeContainerEvent(v: Uint8Array | ContainerEventResponse): Buffer {
  const b = v instanceof Uint8Array ? v : ContainerEventResponse.encode(v).finish();
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function eventHandlers(bus: EventBus<Uint8Array>, log: Logger): Pick<RuntimeHandlers, "getContainerEvents"> {
  return {
    getContainerEvents: serverStream(log, "GetContainerEvents", (_req: GetEventsRequest, call: StreamCall<GetEventsRequest, ContainerEventResponse>) =>
      new Promise<void>((resolve, reject) => {
        let blocked = false;
        // The HTTP/2 stream buffers what write() accepts past its high-water mark; stop there and let the
        // bus queue (bounded) hold the rest, so a stalled client costs at most that bound.
        const pump = () => {
          if (blocked || !sub || sub.closed) return;
          for (let p = sub.next(); p !== undefined; p = sub.next()) {
            if (!call.write(p as never)) {
              blocked = true;
              call.once("drain", () => {
                blocked = false;
                pump();
              });
              return;
            }
          }
        };
        // Unset while subscribe() queues the start-up replay; pump() runs once it returns.
        let sub: Subscription<Uint8Array> | undefined;
        sub = bus.subscribe({
          event: pump,
          cutOff: (dropped) => {
            log.warn({ dropped, droppedTotal: bus.droppedTotal() }, "GetContainerEvents subscriber cut off: it stopped reading");
            reject(new ResourceExhausted(
              `GetContainerEvents: this subscriber fell more than ${MAX_QUEUED_EVENTS} events or ${MAX_QUEUED_BYTES >> 20} MiB behind and was cut off (${dropped} events dropped); ` +
              "read the stream without pausing, then subscribe again and relist to catch up"));
          },
          ended: resolve,
        });
        // Headers right away: the client knows from them that it is subscribed.
        call.sendHeaders();
        log.debug({ subscribers: bus.subscribers() }, "GetContainerEvents subscriber joined");
        const gone = () => {
          sub?.close();
          resolve();
        };
        if (call.cancelled) gone();
        else call.once("cancelled", gone);
        pump();
      })),
  };
}
