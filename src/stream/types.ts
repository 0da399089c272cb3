// The requests the CRI RPCs hand to berth's streaming server, and the service they call. What the
// server asks of the runtime behind it (StreamRuntime, StreamIO) is in src/runtime/stream-io.ts.

export interface ExecRequest {
  kind: "exec";
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface AttachRequest {
  kind: "attach";
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface PortForwardRequest {
  kind: "portforward";
  sandboxId: string;
  ports: number[];
}

export type StreamRequest = ExecRequest | AttachRequest | PortForwardRequest;

/** What the CRI front asks of the streaming service: validate, remember, hand back a URL. */
export interface StreamingService {
  exec(req: Omit<ExecRequest, "kind">): Promise<string>;
  attach(req: Omit<AttachRequest, "kind">): Promise<string>;
  portForward(req: Omit<PortForwardRequest, "kind">): Promise<string>;
}
