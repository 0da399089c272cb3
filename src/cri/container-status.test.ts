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

test("ContainerStatus stays the same object until a changing field or the process's ids change", () => {
  const r = record();
  const ids = { uid: 7n, gid: 8n, supplementalGroups: [] };
  const first = toContainerStatus(r, ids);
  assert.equal(toContainerStatus(r, ids), first);
  // Other ids (a new reading), or none (the spec's): a new status.
  assert.notEqual(toContainerStatus(r, { ...ids }), first);
  const bySpec = toContainerStatus(r);
  assert.equal(toContainerStatus(r), bySpec);
  const changes: Array<[string, (x: ContainerRecord) => void, (s: ReturnType<typeof toContainerStatus>) => unknown, unknown]> = [
    ["phase", (x) => { x.phase = "running"; }, (s) => s.state, ContainerState.CONTAINER_RUNNING],
    ["startedAt", (x) => { x.startedAt = 9n; }, (s) => s.startedAt, 9n],
    ["finishedAt", (x) => { x.finishedAt = 10n; }, (s) => s.finishedAt, 10n],
    ["exitCode", (x) => { x.exitCode = 137; }, (s) => s.exitCode, 137],
    ["reason", (x) => { x.reason = "OOMKilled"; }, (s) => s.reason, "OOMKilled"],
    ["message", (x) => { x.message = "m"; }, (s) => s.message, "m"],
    ["annotations", (x) => { x.annotations = { k: "v" }; }, (s) => s.annotations, { k: "v" }],
    ["resources", (x) => { x.resources = { cpuShares: 5n } as ContainerRecord["resources"]; }, (s) => s.resources?.linux?.cpuShares, 5n],
  ];
  let last = bySpec;
  for (const [name, change, read, want] of changes) {
    change(r);
    const now = toContainerStatus(r);
    assert.notEqual(now, last, name);
    assert.deepEqual(read(now), want, name);
    assert.equal(toContainerStatus(r), now, name);
    last = now;
  }
});
