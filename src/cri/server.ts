// Assembles the RuntimeService and ImageService implementations from the RPC group files.
// Every RPC no group implements answers UNIMPLEMENTED with its name.
import { Server, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { ImageServiceService, RuntimeServiceService, type ImageServiceServer, type RuntimeServiceServer } from "../gen/api.js";
import type { Logger } from "../log.js";
import { serializeContainerEvent } from "./events.js";
import {
  serializeListContainers, serializeListPodSandbox, serializeStreamContainers, serializeStreamContainerStats, serializeStreamImages,
  serializeStreamPodSandboxes, serializeStreamPodSandboxStats, serializeStreamPodSandboxMetrics,
} from "./list-encoding.js";
import { malformedRequest, unimplemented } from "./rpc.js";

type Definition = Record<string, { path: string; responseStream: boolean; requestDeserialize: (b: Buffer) => unknown; responseSerialize: (v: never) => Buffer }>;

/** Responses whose items keep their encoded bytes between calls (list-encoding.ts), or are encoded already (events.ts). */
const CACHED_SERIALIZERS: Record<string, (v: never) => Buffer> = {
  listContainers: serializeListContainers,
  listPodSandbox: serializeListPodSandbox,
  streamContainers: serializeStreamContainers,
  streamPodSandboxes: serializeStreamPodSandboxes,
  streamImages: serializeStreamImages,
  streamContainerStats: serializeStreamContainerStats,
  streamPodSandboxStats: serializeStreamPodSandboxStats,
  streamPodSandboxMetrics: serializeStreamPodSandboxMetrics,
  getContainerEvents: serializeContainerEvent,
};

/**
 * grpc-js answers a request it cannot decode with INTERNAL; berth answers INVALID_ARGUMENT
 * naming the RPC, so the decoder's failure is carried to the handler instead.
 */
function tolerantDecoding<D extends Definition>(definition: D): D {
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(definition)) {
    out[key] = {
      ...def,
      responseSerialize: CACHED_SERIALIZERS[key] ?? def.responseSerialize,
      requestDeserialize: (b: Buffer) => {
        try {
          return def.requestDeserialize(b);
        } catch (err) {
          return malformedRequest(err);
        }
      },
    };
  }
  return out as D;
}

function withDefaults<T extends UntypedServiceImplementation>(service: string, definition: Definition, impl: Partial<T>, log: Logger): T {
  const full: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(definition)) {
    const name = def.path.slice(def.path.lastIndexOf("/") + 1);
    full[key] = (impl as Record<string, unknown>)[key] ??
      (def.responseStream
        ? (call: { destroy: (e: Error) => void }) => call.destroy(Object.assign(new Error(`runtime.v1.${service}.${name} is not implemented by berth yet`), { code: 12 }))
        : unimplemented(log, service, name));
  }
  return full as T;
}

export function createGrpcServer(runtime: Partial<RuntimeServiceServer>, image: Partial<ImageServiceServer>, log: Logger): Server {
  const server = new Server({
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  });
  server.addService(tolerantDecoding(RuntimeServiceService), withDefaults<RuntimeServiceServer>("RuntimeService", RuntimeServiceService, runtime, log));
  server.addService(tolerantDecoding(ImageServiceService), withDefaults<ImageServiceServer>("ImageService", ImageServiceService, image, log));
  return server;
}
