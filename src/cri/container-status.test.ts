import assert from "node:assert/strict";
import { test } from "node:test";
import { ContainerState } from "../gen/api.js";
import type { ContainerRecord } from "../runtime/container-record.js";
import { containerListFilter, toContainerItem, toContainerStatus } from "./container-status.js";

const record = (): ContainerRecord => ({
  id: "c1", sandboxId: "p1", kind: "container", name: "n", metadata: { name: "n", attempt: 0 },
  image: { image: "busybox", annotations: {}, userSpecifiedImage: "", runtimeHandler: "" }, imageId: "sha256:i", imageRef: "r", imageName: "busybox:1",
  labels: { a: "1" }, annotations: {}, mounts: [], logPath: "/l", tty: false, stdin: false, stdinOnce: false,
  phase: "created", createdAt: 1n, startedAt: 0n, finishedAt: 0n, exitCode: 0, reason: "", message: "",
  handler: "runc", runtimeRoot: "/r", bundle: "/b", rootfs: "/f", exitFile: "/e", socketLink: "/s", cgroupsPath: "/c", conmonPid: 0, pid: 0,
  resources: undefined, user: { uid: 1, gid: 2, additionalGids: [3] }, stopSignal: "SIGTERM",
  process: { terminal: false, user: { uid: 1, gid: 2 }, args: [], env: [], cwd: "/", capabilities: {}, noNewPrivileges: true },
}) as unknown as ContainerRecord;

test("a list item stays the same object until the state or annotations change (list-encoding keeps its bytes)", () => {
  const r = record();
  const first = toContainerItem(r);
  assert.equal(toContainerItem(r), first);
  r.phase = "running";
  const running = toContainerItem(r);
  assert.notEqual(running, first);
  assert.equal(running.state, ContainerState.CONTAINER_RUNNING);
  r.annotations = { x: "y" };
  assert.notEqual(toContainerItem(r), running);
});

test("ContainerStatus takes the process's ids when given, the spec's otherwise", () => {
  const r = record();
  assert.deepEqual(toContainerStatus(r).user?.linux, { uid: 1n, gid: 2n, supplementalGroups: [3n] });
  assert.deepEqual(toContainerStatus(r, { uid: 7n, gid: 8n, supplementalGroups: [] }).user?.linux, { uid: 7n, gid: 8n, supplementalGroups: [] });
});

test("ListContainers' filter in the back-end's words", () => {
  assert.deepEqual(containerListFilter(undefined), {});
  assert.deepEqual(containerListFilter({ id: "", podSandboxId: "p", labelSelector: {}, state: { state: ContainerState.CONTAINER_EXITED } }), { id: undefined, podSandboxId: "p", labelSelector: {}, phase: "exited" });
  assert.equal(containerListFilter({ id: "", podSandboxId: "", labelSelector: {}, state: { state: ContainerState.CONTAINER_UNKNOWN } }).phase, "none");
});
