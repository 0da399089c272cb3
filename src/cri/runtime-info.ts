// Version, Status, RuntimeConfig, UpdateRuntimeConfig: what the node runtime is and whether it is ready.
import { CgroupDriver, type StatusResponse } from "../gen/api.js";
import { InvalidArgument } from "../errors.js";
import type { Logger } from "../log.js";
import type { Condition, NodeInfo } from "../runtime/node-info.js";
import { unary, type RuntimeHandlers } from "./rpc.js";

export function runtimeInfoHandlers(info: NodeInfo, log: Logger): Pick<RuntimeHandlers, "version" | "status" | "runtimeConfig" | "updateRuntimeConfig"> {
  const version = { version: "0.1.0", runtimeName: "berth", runtimeVersion: info.runtimeVersion, runtimeApiVersion: "v1" };
  let lastStatus: { rt: Condition; net: Condition; handlers: unknown; userNamespaces: boolean; res: StatusResponse } | undefined;
  return {
    // The same object every time: its encoded bytes are kept (server.ts, CACHED_SERIALIZERS).
    version: unary(log, "Version", async () => version),

    status: unary(log, "Status", async (req) => {
      const [rt, net, handlers] = await Promise.all([info.runtimeCondition(), info.networkCondition(), info.handlerFeatures()]);
      const userNamespaces = info.userNamespaces;
      // Nothing changed since the last (non-verbose) answer: the same response object, whose bytes are kept.
      const last = lastStatus;
      if (!req.verbose && last && last.rt === rt && last.net === net && last.handlers === handlers && last.userNamespaces === userNamespaces) return last.res;
      const condition = (type: string, c: Condition) => ({ type, status: c.ready, reason: c.reason, message: c.message });
      const verboseInfo: Record<string, string> = req.verbose ? { config: JSON.stringify(info.effectiveConfig()) } : {};
      const res = {
        status: { conditions: [condition("RuntimeReady", rt), condition("NetworkReady", net)] },
        info: verboseInfo,
        runtimeHandlers: handlers.map((h) => ({ name: h.name, features: { recursiveReadOnlyMounts: h.recursiveReadOnlyMounts, userNamespaces } })),
        features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false },
      };
      if (!req.verbose) lastStatus = { rt, net, handlers, userNamespaces, res };
      return res;
    }),

    runtimeConfig: unary(log, "RuntimeConfig", async () => ({
      linux: { cgroupDriver: info.cgroupDriver === "systemd" ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS },
    })),

    updateRuntimeConfig: unary(log, "UpdateRuntimeConfig", async (req) => {
      const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? "";
      if (cidr !== "" && !/^[0-9a-fA-F.:]+\/\d{1,3}(,[0-9a-fA-F.:]+\/\d{1,3})*$/.test(cidr)) {
        throw new InvalidArgument(`runtime_config.network_config.pod_cidr "${cidr}" is not a CIDR (example: 10.88.0.0/16)`);
      }
      if (cidr !== "") info.setPodCidr(cidr);
      return {};
    }),
  };
}
