// A promise-based CRI client over grpc-js, built from the same proto as the server.
// Requests are partial: missing fields take their proto3 defaults (fromPartial).
// Used by the tests and the benchmark harness; berthd itself never dials a CRI socket.
import { credentials, Metadata, type ClientReadableStream, type ServiceError, Client, makeGenericClientConstructor } from "@grpc/grpc-js";
import { ImageServiceDefinition, ImageServiceService, RuntimeServiceDefinition, RuntimeServiceService, type ContainerEventResponse, type GetEventsRequest } from "../gen/api.js";

interface MessageType<T> {
  fromPartial(object: unknown): T;
}
interface MethodDef {
  requestType: MessageType<unknown>;
  responseType: MessageType<unknown>;
  requestStream: boolean;
  responseStream: boolean;
}
type Methods<D extends { methods: Record<string, MethodDef> }> = {
  [K in keyof D["methods"] as D["methods"][K]["responseStream"] extends true ? never : K]: (
    req?: DeepPartial<ReturnType<D["methods"][K]["requestType"]["fromPartial"]>>,
    opts?: { timeoutMs?: number },
  ) => Promise<ReturnType<D["methods"][K]["responseType"]["fromPartial"]>>;
};
/** The server-streaming RPCs: each returns the call's stream of responses. */
type StreamMethods<D extends { methods: Record<string, MethodDef> }> = {
  [K in keyof D["methods"] as D["methods"][K]["responseStream"] extends true ? K : never]: (
    req?: DeepPartial<ReturnType<D["methods"][K]["requestType"]["fromPartial"]>>,
    opts?: { timeoutMs?: number },
  ) => ClientReadableStream<ReturnType<D["methods"][K]["responseType"]["fromPartial"]>>;
};
export type DeepPartial<T> = T extends bigint | string | number | boolean | Uint8Array | undefined ? T : T extends Array<infer U> ? Array<DeepPartial<U>> : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : Partial<T>;

export type RuntimeApi = Methods<typeof RuntimeServiceDefinition>;
export type ImageApi = Methods<typeof ImageServiceDefinition>;

function bindStreams<D extends { methods: Record<string, MethodDef> }>(client: Client, definition: D): StreamMethods<D> {
  const api: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(definition.methods)) {
    if (!def.responseStream) continue;
    const fn = (client as unknown as Record<string, Function>)[key]!.bind(client);
    api[key] = (req: unknown = {}, opts: { timeoutMs?: number } = {}) =>
      fn(def.requestType.fromPartial(req), new Metadata(), { deadline: opts.timeoutMs ? Date.now() + opts.timeoutMs : Infinity });
  }
  return api as StreamMethods<D>;
}

/** Every response of a server stream, once it ends; rejects with the stream's error. */
export function collect<T>(stream: ClientReadableStream<T>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const out: T[] = [];
    stream.on("data", (m: T) => out.push(m));
    stream.on("error", reject);
    stream.on("end", () => resolve(out));
  });
}

function bind<D extends { methods: Record<string, MethodDef> }>(client: Client, definition: D): Methods<D> {
  const api: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(definition.methods)) {
    if (def.responseStream) continue;
    const fn = (client as unknown as Record<string, Function>)[key]!.bind(client);
    api[key] = (req: unknown = {}, opts: { timeoutMs?: number } = {}) =>
      new Promise((resolve, reject) => {
        const deadline = opts.timeoutMs ? Date.now() + opts.timeoutMs : Infinity;
        fn(def.requestType.fromPartial(req), new Metadata(), { deadline }, (err: ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
      });
  }
  return api as Methods<D>;
}

export interface CriClient {
  runtime: RuntimeApi;
  image: ImageApi;
  events(req?: Partial<GetEventsRequest>): ClientReadableStream<ContainerEventResponse>;
  /** The server-streaming RPCs (StreamContainers, GetContainerEvents, …). */
  runtimeStreams: StreamMethods<typeof RuntimeServiceDefinition>;
  imageStreams: StreamMethods<typeof ImageServiceDefinition>;
  close(): void;
}

/** Connects to a CRI socket path (or a `unix://` address); `ownConnection`: not shared with other clients of the socket (load tests). */
export function connectCri(socket: string, o: { ownConnection?: boolean } = {}): CriClient {
  const address = socket.startsWith("unix://") ? socket : `unix://${socket}`;
  const options = { "grpc.max_receive_message_length": 16 * 1024 * 1024, ...(o.ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}) };
  const RuntimeClient = makeGenericClientConstructor(RuntimeServiceService, "runtime.v1.RuntimeService");
  const ImageClient = makeGenericClientConstructor(ImageServiceService, "runtime.v1.ImageService");
  const rt = new RuntimeClient(address, credentials.createInsecure(), options);
  const im = new ImageClient(address, credentials.createInsecure(), options);
  return {
    runtime: bind(rt, RuntimeServiceDefinition),
    image: bind(im, ImageServiceDefinition),
    runtimeStreams: bindStreams(rt, RuntimeServiceDefinition),
    imageStreams: bindStreams(im, ImageServiceDefinition),
    events: (req = {}) => (rt as unknown as { getContainerEvents(r: GetEventsRequest): ClientReadableStream<ContainerEventResponse> }).getContainerEvents({ ...req } as GetEventsRequest),
    close: () => {
      rt.close();
      im.close();
    },
  };
}
