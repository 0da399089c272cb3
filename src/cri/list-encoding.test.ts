import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ContainerState, ContainerStatus, ContainerStatusResponse, ImageStatusResponse, ListContainersResponse, ListPodSandboxResponse, PodSandboxState,
  PodSandboxStatus, PodSandboxStatusResponse, VersionResponse, type Container, type PodSandbox,
} from "../gen/api.js";
import { keptBytes, serializeContainerStatus, serializeImageStatus, serializeListContainers, serializeListPodSandbox, serializePodSandboxStatus } from "./list-encoding.js";

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

  test("status responses: the kept status bytes and the fields encoded each time decode to the response", () => {
    const cs = (i: number) => ContainerStatus.fromPartial({ id: `c${i}`, state: ContainerState.CONTAINER_RUNNING, labels: { l: "x".repeat(i * 100) }, exitCode: i });
    for (const info of [{}, { info: "{\"pid\":1}" }] as Array<Record<string, string>>) {
      const res = { status: cs(3), info };
      assert.deepEqual(ContainerStatusResponse.decode(serializeContainerStatus(res)), res);
      // With no info, byte for byte the generated encoding.
      if (!info["info"]) assert.deepEqual(serializeContainerStatus(res), Buffer.from(ContainerStatusResponse.encode(res).finish()));
    }
    assert.deepEqual(ContainerStatusResponse.decode(serializeContainerStatus({ status: undefined, info: {} })), { status: undefined, info: {} });
    const pod = PodSandboxStatus.fromPartial({ id: "p", state: PodSandboxState.SANDBOX_READY, createdAt: 4n, network: { ip: "10.0.0.2", additionalIps: [] } });
    for (const containersStatuses of [[], [cs(1), cs(2)]]) {
      const res = { status: pod, info: { info: "{}" }, containersStatuses, timestamp: 1_790_000_000_123_456_789n };
      assert.deepEqual(PodSandboxStatusResponse.decode(serializePodSandboxStatus(res)), res);
    }
    const image = { id: "sha256:1", repoTags: ["a:1"], repoDigests: [], size: 7n, uid: { value: 0n }, username: "", spec: undefined, pinned: false };
    for (const info of [{}, { info: "{}" }] as Array<Record<string, string>>) assert.deepEqual(ImageStatusResponse.decode(serializeImageStatus({ image, info })), { image, info });
    assert.equal(serializeImageStatus({ image: undefined, info: {} }).length, 0);
  });

  test("a status object keeps its bytes; the pod's timestamp is encoded each time", () => {
    const status = ContainerStatus.fromPartial({ id: "c", state: ContainerState.CONTAINER_RUNNING });
    const first = serializeContainerStatus({ status, info: {} });
    status.exitCode = 9; // against the contract: shows the bytes are the kept ones
    assert.deepEqual(serializeContainerStatus({ status, info: {} }), first);
    const pod = PodSandboxStatus.fromPartial({ id: "p" });
    const a = PodSandboxStatusResponse.decode(serializePodSandboxStatus({ status: pod, info: {}, containersStatuses: [status], timestamp: 1n }));
    const b = PodSandboxStatusResponse.decode(serializePodSandboxStatus({ status: pod, info: {}, containersStatuses: [status], timestamp: 2n }));
    assert.equal(a.timestamp, 1n);
    assert.equal(b.timestamp, 2n);
    assert.equal(b.containersStatuses[0]!.exitCode, 0);
  });
});
