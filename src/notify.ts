// systemd's service notifications (Type=notify) without libsystemd: "READY=1" once the CRI
// socket serves and "STOPPING=1" when shutdown starts, each one datagram to $NOTIFY_SOCKET
// (a path, or "@name" for an abstract socket).
import type { Logger } from "./log.js";
import { sendDatagram } from "./native/native.js";

export class ServiceNotifier {
  private constructor(private readonly socket: string | undefined) {}

  /**
   * Takes NOTIFY_SOCKET out of the environment: runc and CNI plugins inherit berthd's, and
   * runc given a NOTIFY_SOCKET would wait for the container's own READY=1.
   */
  static fromEnvironment(): ServiceNotifier {
    const socket = process.env.NOTIFY_SOCKET || undefined;
    delete process.env.NOTIFY_SOCKET;
    return new ServiceNotifier(socket);
  }

  /** Sends `state` ("READY=1", "STOPPING=1" ...); does nothing outside systemd. A failure is logged, never thrown. */
  notify(state: string, log: Logger): void {
    if (!this.socket) return;
    try {
      sendDatagram(this.socket, state);
    } catch (err) {
      log.warn({ notifySocket: this.socket, state, err: (err as Error).message }, "cannot notify systemd");
    }
  }
}
