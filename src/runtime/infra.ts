// A pod's infra (pause) container: a runc + conmon container from image.pause_image that holds
// the pod's PID namespace (it joins the pod's pinned net, ipc and uts namespaces). It is the
// PID 1 the pod's containers see when the pod shares one PID namespace.
import { ContainerConfig, NamespaceMode } from "../gen/api.js";
import type { ImageStore } from "../image/types.js";
import { causeChain, FailedPrecondition } from "../errors.js";
import type { ContainerManager } from "./container.js";
import type { InfraContainers, SandboxRef } from "./types.js";

export class PauseContainers implements InfraContainers {
  constructor(
    private readonly containers: ContainerManager,
    private readonly images: ImageStore,
    private readonly pauseImage: string,
  ) {}

  async start(sandbox: SandboxRef): Promise<{ pid: number; containerId: string }> {
    const existing = this.containers.infraOf(sandbox.id);
    if (existing && existing.phase === "running") return { pid: existing.pid, containerId: existing.id };
    if (existing) await this.containers.removeInfra(sandbox.id);
    if (!(await this.images.resolve(this.pauseImage))) {
      await this.images.pull(this.pauseImage).catch((err) => {
        // Without its pause image no shared-PID pod can start: a precondition of the node.
        throw new FailedPrecondition(`the infra container needs image.pause_image "${this.pauseImage}", which is not present and cannot be pulled: ${causeChain(err)}`, { cause: err });
      });
    }
    const config = ContainerConfig.fromPartial({
      metadata: { name: "POD", attempt: sandbox.metadata.attempt },
      image: { image: this.pauseImage },
      labels: { "io.kubernetes.pod.name": sandbox.metadata.name, "io.kubernetes.pod.namespace": sandbox.metadata.namespace },
      linux: {
        securityContext: {
          // The infra container creates the pod's PID namespace rather than joining one.
          namespaceOptions: { network: sandbox.namespaceOptions.network, ipc: sandbox.namespaceOptions.ipc, pid: NamespaceMode.CONTAINER },
          readonlyRootfs: true,
          noNewPrivs: true,
          capabilities: { dropCapabilities: ["ALL"] },
          seccompProfilePath: "runtime/default",
        },
      },
    });
    const r = await this.containers.runInfra(sandbox, config);
    return { pid: r.pid, containerId: r.id };
  }

  async stop(sandboxId: string): Promise<void> {
    await this.containers.stopInfra(sandboxId);
  }

  async remove(sandboxId: string): Promise<void> {
    await this.containers.removeInfra(sandboxId);
  }
}
