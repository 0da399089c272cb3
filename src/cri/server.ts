// Assembles the RuntimeService and ImageService implementations from the RPC group files into
// berth's gRPC server (src/grpc/server.ts). Every RPC no group implements answers UNIMPLEMENTED
// with its name.
import { ImageServiceService, RuntimeServiceService, StatusResponse, VersionResponse } from "../gen/api.js";
import { GrpcServer, methodTable, type Call, type MethodDefinition } from "../grpc/server.js";
import { status } from "../grpc/status.js";
import type { Logger } from "../log.js";
import { serializeContainerEvent } from "./events.js";
import {
  keptBytes, serializeContainerStatus, serializeImageStatus, serializeListContainers, serializePodSandboxStatus, serializeListPodSandbox, serializeStreamContainers, serializeStreamImages,
  serializeStreamPodSandboxes, serializeStreamPodSandboxMetrics,
} from "./list-encoding.js";
import {
  serializeContainerStats, serializeListContainerStats, serializeListPodSandboxStats, serializePodSandboxStats, serializeStreamContainerStats, serializeStreamPodSandboxStats,
} from "./stats-encoding.js";
import { rejected, unimplemented, type ImageHandlers, type RuntimeHandlers } from "./rpc.js";

/** Responses whose items or status objects (or, for Version and Status, the response itself) keep their encoded bytes between calls (list-encoding.ts), are encoded already (events.ts), or are written in place (the stats, stats-encoding.ts). */
const CACHED_SERIALIZERS: Record<string, (v: never) => Buffer> = {
  listContainers: serializeListContainers,
  listPodSandbox: serializeListPodSandbox,
  streamContainers: serializeStreamContainers,
  streamPodSandboxes: serializeStreamPodSandboxes,
  streamImages: serializeStreamImages,
  containerStats: serializeContainerStats,
  listContainerStats: serializeListContainerStats,
  podSandboxStats: serializePodSandboxStats,
  listPodSandboxStats: serializeListPodSandboxStats,
  streamContainerStats: serializeStreamContainerStats,
  streamPodSandboxStats: serializeStreamPodSandboxStats,
  streamPodSandboxMetrics: serializeStreamPodSandboxMetrics,
  getContainerEvents: serializeContainerEvent,
  containerStatus: serializeContainerStatus,
  podSandboxStatus: serializePodSandboxStatus,
  imageStatus: serializeImageStatus,
  version: keptBytes((r: VersionResponse) => VersionResponse.encode(r).finish()),
  status: keptBytes((r: StatusResponse) => StatusResponse.encode(r).finish()),
};

function withCachedSerializers(definition: Record<string, MethodDefinition>): Record<string, MethodDefinition> {
  const out: Record<string, MethodDefinition> = {};
  for (const [key, def] of Object.entries(definition)) out[key] = { ...def, responseSerialize: CACHED_SERIALIZERS[key] ?? def.responseSerialize };
  return out;
}

/** The handlers given, and an UNIMPLEMENTED one naming the RPC for every other method. The one place handlers lose their types. */
function withDefaults(service: string, definition: Record<string, MethodDefinition>, impl: object, log: Logger): Record<string, (call: Call) => void> {
  const full: Record<string, (call: Call) => void> = {};
  for (const [key, def] of Object.entries(definition)) {
    const name = def.path.slice(def.path.lastIndexOf("/") + 1);
    const given = (impl as Record<string, ((call: Call) => void) | undefined>)[key];
    full[key] = given ?? (def.responseStream
      ? (call: Call) => call.fail(status.UNIMPLEMENTED, `runtime.v1.${service}.${name} is not implemented by berth yet`)
      : unimplemented(log, service, name) as (call: Call) => void);
  }
  return full;
}

export function createGrpcServer(runtime: Partial<RuntimeHandlers>, image: Partial<ImageHandlers>, log: Logger): GrpcServer {
  const methods = methodTable([
    { service: "RuntimeService", definition: withCachedSerializers(RuntimeServiceService), handlers: withDefaults("RuntimeService", RuntimeServiceService, runtime, log) },
    { service: "ImageService", definition: withCachedSerializers(ImageServiceService), handlers: withDefaults("ImageService", ImageServiceService, image, log) },
  ]);
  return new GrpcServer(methods, (method, code, message) => rejected(log, method, code, message));
}
