// The CNI network each runtime under test gets: the same conflist shape (bridge + host-local +
// portmap + loopback, like docs/cni/10-berth.conflist) on its own bridge and subnet, with the
// IPAM leases kept in the benchmark's temp dir instead of /var/lib/cni.

export interface BenchNetwork {
  name: string;
  bridge: string;
  subnet: string;
}

export const NETWORKS = {
  berth: { name: "berth-bench-b", bridge: "bbench0", subnet: "10.92.0.0/24" },
  containerd: { name: "berth-bench-c", bridge: "bbench1", subnet: "10.92.1.0/24" },
  crio: { name: "berth-bench-o", bridge: "bbench2", subnet: "10.92.2.0/24" },
} as const satisfies Record<string, BenchNetwork>;

export function conflist(net: BenchNetwork, ipamDataDir: string): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: net.name,
    plugins: [
      {
        type: "bridge",
        bridge: net.bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: ipamDataDir,
          routes: [{ dst: "0.0.0.0/0" }],
          ranges: [[{ subnet: net.subnet }]],
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
      { type: "loopback" },
    ],
  }, null, 2);
}
