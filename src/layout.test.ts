import assert from "node:assert/strict";
import { test } from "node:test";
import { StateLayout } from "./layout.js";

const L = new StateLayout({ root: "/r", state: "/s", runtime: { handlers: { runc: { root: "" }, kata: { root: "/k" } } } });
const id = "a".repeat(64);

test("every path under root and state", () => {
  const table: Array<[string, string]> = [
    [L.containerRecords, "/r/containers"],
    [L.sandboxRecords, "/r/sandboxes"],
    [L.imageRoot, "/r/image"],
    [L.snapshot(id), `/r/image/snapshots/${id}`],
    [L.cniResults, "/r/cni/results"],
    [L.bundles, "/s/containers"],
    [L.bundle(id).spec, `/s/containers/${id}/config.json`],
    [L.bundle(id).ctl, `/s/containers/${id}/ctl`],
    [L.bundle(id).attach, `/s/containers/${id}/attach`],
    [L.bundle(id).conmonPidFile, `/s/containers/${id}/conmon.pid`],
    [L.exitFile(id), `/s/exits/${id}`],
    // The links conmon writes and recovery sweeps are one path: they once drifted (s vs sock).
    [L.socketLink(id), `/s/s/${id}`],
    [L.execs, "/s/exec"],
    [L.stagedMounts, "/s/mounts"],
    [L.runtimeRoot("runc"), "/s/runtime/runc"],
    [L.runtimeRoot("kata"), "/k"],
    [L.pin(id, "net"), `/s/ns/${id}/net`],
    [L.podShm(id), `/s/pods/${id}/shm`],
    [L.podFiles(id).resolvConf, `/s/pods/${id}/resolv.conf`],
  ];
  for (const [got, want] of table) assert.equal(got, want);
});

test("a socket link stays under conmon's 107-byte limit for a long state dir", () => {
  const long = new StateLayout({ root: "/r", state: "/" + "x".repeat(30), runtime: { handlers: {} } });
  assert.ok(long.socketLink(id).length < 107);
});
