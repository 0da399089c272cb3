import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ContainerState, ListContainersResponse, ListPodSandboxResponse, PodSandboxState, VersionResponse, type Container, type PodSandbox } from "../gen/api.js";
import { keptBytes, serializeListContainers, serializeListPodSandbox } from "./list-encoding.js";

function container(i: number, labelBytes: number): Container {
  return {
    id: `${i}`.padStart(64, "c"), podSandboxId: "p".repeat(64), metadata: { name: `c${i}`, attempt: i },
    image: { image: "reg/busybox:1", annotations: {}, userSpecifiedImage: "reg/busybox:1", runtimeHandler: "", imageRef: "" },
    imageRef: "reg/busybox@sha256:" + "1".repeat(64), imageId: "sha256:" + "2".repeat(64),
    state: i % 2 ? ContainerState.CONTAINER_RUNNING : ContainerState.CONTAINER_EXITED,
    createdAt: 1_790_000_000_000_000_000n + BigInt(i), labels: { big: "x".repeat(labelBytes), n: `${i}` }, annotations: { a: "b" },
  };
}

describe("cached list encoding", () => {
  test("byte for byte what the generated encoder writes, for item sizes needing 1, 2 and 3 length bytes", () => {
    for (const labelBytes of [0, 200, 20_000]) {
      const res = { containers: [0, 1, 2].map((i) => container(i, labelBytes)) };
      const ours = serializeListContainers(res);
      assert.deepEqual(ours, Buffer.from(ListContainersResponse.encode(res).finish()));
      assert.deepEqual(ListContainersResponse.decode(ours), res);
    }
    assert.equal(serializeListContainers({ containers: [] }).length, 0);
  });

  test("an item object keeps its bytes; a new object for a changed item is encoded afresh", () => {
    const pod: PodSandbox = { id: "a".repeat(64), metadata: { name: "p", uid: "u", namespace: "n", attempt: 0 }, state: PodSandboxState.SANDBOX_READY, createdAt: 5n, labels: {}, annotations: {}, runtimeHandler: "runc" };
    const first = serializeListPodSandbox({ items: [pod] });
    // The same object: the kept bytes, even though (against the contract) it was mutated.
    pod.runtimeHandler = "other";
    assert.deepEqual(serializeListPodSandbox({ items: [pod] }), first);
    const changed = { ...pod, state: PodSandboxState.SANDBOX_NOTREADY };
    assert.deepEqual(ListPodSandboxResponse.decode(serializeListPodSandbox({ items: [changed] })).items[0]!.state, PodSandboxState.SANDBOX_NOTREADY);
  });

  test("the same items in the same order give the same buffer; any other list is encoded again", () => {
    const pod = (id: string): PodSandbox => ({ id, metadata: { name: id, uid: "u", namespace: "n", attempt: 0 }, state: PodSandboxState.SANDBOX_READY, createdAt: 5n, labels: {}, annotations: {}, runtimeHandler: "runc" });
    const a = pod("a");
    const b = pod("b");
    const ab = serializeListPodSandbox({ items: [a, b] });
    assert.equal(serializeListPodSandbox({ items: [a, b] }), ab, "a new array of the same objects: the same bytes, not re-framed");
    const ba = serializeListPodSandbox({ items: [b, a] });
    assert.notEqual(ba, ab);
    assert.deepEqual(ListPodSandboxResponse.decode(ba).items.map((p) => p.id), ["b", "a"]);
    assert.deepEqual(ListPodSandboxResponse.decode(serializeListPodSandbox({ items: [a] })).items.map((p) => p.id), ["a"]);
    assert.equal(serializeListPodSandbox({ items: [] }).length, 0);
  });

  test("keptBytes: one encoding per response object", () => {
    let encodes = 0;
    const serialize = keptBytes((r: { version: string }) => {
      encodes++;
      return VersionResponse.encode({ version: r.version, runtimeName: "", runtimeVersion: "", runtimeApiVersion: "" }).finish();
    });
    const res = { version: "1" };
    const first = serialize(res);
    assert.deepEqual(serialize(res), first);
    assert.equal(encodes, 1);
    assert.equal(VersionResponse.decode(serialize({ version: "2" })).version, "2");
    assert.equal(encodes, 2);
  });
});
