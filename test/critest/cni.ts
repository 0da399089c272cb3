// The harness's own CNI network: bridge + host-local + portmap + loopback, host-local's state kept in the run's
// private dir so nothing is left in /var/lib/cni.
export interface NetworkSpec {
  name: string;
  bridge: string;
  subnet: string;
  /** host-local's allocation store. */
  dataDir: string;
}

/** The conflist for one run (berth: bcrit0 10.93.0.0/16; the containerd baseline: bcrit1 10.93.128.0/17). */
export function conflist(n: NetworkSpec): string {
  return JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: n.name,
      plugins: [
        {
          type: "bridge",
          bridge: n.bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: { type: "host-local", dataDir: n.dataDir, routes: [{ dst: "0.0.0.0/0" }], ranges: [[{ subnet: n.subnet }]] },
        },
        { type: "portmap", capabilities: { portMappings: true } },
        { type: "loopback" },
      ],
    },
    null,
    2,
  ) + "\n";
}
