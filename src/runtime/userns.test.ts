// The checks of userns_options and the helpers around a pod's id mappings.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidArgument } from "../errors.js";
import { NamespaceMode, NamespaceOption } from "../gen/api.js";
import { hostIdOf, mapLine, podUserns, sameMapping, usernsRef } from "./userns.js";

const M = (containerId: number, hostId: number, length: number) => ({ containerId, hostId, length });
const ns = (userns: object | undefined, over: object = {}) =>
  NamespaceOption.fromPartial({ network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD, usernsOptions: userns, ...over });

describe("podUserns", () => {
  test("NODE and no options: the host's user namespace", () => {
    assert.equal(podUserns(ns(undefined)), undefined);
    assert.equal(podUserns(ns({ mode: NamespaceMode.NODE })), undefined);
  });

  test("POD with one uid and one gid mapping from container id 0", () => {
    assert.deepEqual(podUserns(ns({ mode: NamespaceMode.POD, uids: [M(0, 100000, 65536)], gids: [M(0, 200000, 10)] })), {
      uids: M(0, 100000, 65536), gids: M(0, 200000, 10),
    });
  });

  const bad: Array<[string, object, RegExp, object?]> = [
    ["CONTAINER", { mode: NamespaceMode.CONTAINER }, /mode CONTAINER is not supported/],
    ["TARGET", { mode: NamespaceMode.TARGET }, /mode TARGET is not supported/],
    ["no uid mapping", { mode: NamespaceMode.POD, uids: [], gids: [M(0, 1, 1)] }, /uids: .*exactly one mapping.*got 0/],
    ["two gid mappings", { mode: NamespaceMode.POD, uids: [M(0, 1, 1)], gids: [M(0, 1, 1), M(1, 5, 1)] }, /gids: .*exactly one mapping.*got 2/],
    ["container id 0 unmapped", { mode: NamespaceMode.POD, uids: [M(1, 1000, 100000)], gids: [M(0, 1, 1)] }, /uids: the mapping starts at container id 1, leaving container id 0 \(root\) unmapped/],
    ["length 0", { mode: NamespaceMode.POD, uids: [M(0, 1000, 0)], gids: [M(0, 1, 1)] }, /length 0 must be at least 1/],
    ["past 2^32", { mode: NamespaceMode.POD, uids: [M(0, 4294967290, 100)], gids: [M(0, 1, 1)] }, /go past 4294967295/],
    ["mappings with NODE", { mode: NamespaceMode.NODE, uids: [M(0, 1, 1)], gids: [] }, /mode NODE .* takes no uids\/gids/],
    ["host network", { mode: NamespaceMode.POD, uids: [M(0, 1, 1)], gids: [M(0, 1, 1)] }, /host's network namespace/, { network: NamespaceMode.NODE }],
    ["host PID", { mode: NamespaceMode.POD, uids: [M(0, 1, 1)], gids: [M(0, 1, 1)] }, /host's pid namespace/, { pid: NamespaceMode.NODE }],
    ["host IPC", { mode: NamespaceMode.POD, uids: [M(0, 1, 1)], gids: [M(0, 1, 1)] }, /host's ipc namespace/, { ipc: NamespaceMode.NODE }],
  ];
  for (const [what, userns, re, over] of bad) {
    test(`InvalidArgument: ${what}`, () => {
      assert.throws(() => podUserns(ns(userns, over)), (e: Error) => e instanceof InvalidArgument && re.test(e.message));
    });
  }
});

test("map lines, host ids, a mount's own mappings, the image layer's reference", () => {
  const u = { uids: M(0, 100000, 65536), gids: M(0, 200000, 65536) };
  assert.equal(mapLine(u.uids), "0 100000 65536\n");
  assert.equal(hostIdOf(u.gids, 5), 200005);
  assert.ok(sameMapping(u, [M(0, 100000, 65536)], [M(0, 200000, 65536)]));
  assert.ok(!sameMapping(u, [M(0, 100000, 65536)], [M(0, 200001, 65536)]));
  assert.ok(!sameMapping(u, [], [M(0, 200000, 65536)]));
  assert.deepEqual(usernsRef({ ...u, path: "/s/ns/p/user" }), { path: "/s/ns/p/user", rootUid: 100000, rootGid: 200000 });
  assert.equal(usernsRef(undefined), undefined);
});
