// Assembles the RuntimeService and ImageService implementations from the RPC group files.
// Every RPC no group implements answers UNIMPLEMENTED with its name.
import { Server, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { ImageServiceService, RuntimeServiceService, type ImageServiceServer, type RuntimeServiceServer } from "../gen/api.js";
import type { Logger } from "../log.js";
import { unimplemented } from "./rpc.js";

function withDefaults<T extends UntypedServiceImplementation>(service: string, definition: Record<string, { path: string; responseStream: boolean }>, impl: Partial<T>, log: Logger): T {
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
  server.addService(RuntimeServiceService, withDefaults<RuntimeServiceServer>("RuntimeService", RuntimeServiceService, runtime, log));
  server.addService(ImageServiceService, withDefaults<ImageServiceServer>("ImageService", ImageServiceService, image, log));
  return server;
}
