import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { AlreadyExists, InvalidArgument, NotFound } from "../errors.js";
import type { ContainerRecord } from "./container-record.js";
import { ContainerStore } from "./container-store.js";

const rec = (id: string, sandboxId: string, kind: ContainerRecord["kind"] = "container") => ({ id, sandboxId, kind, name: `n-${id}`, phase: "created" }) as ContainerRecord;
const log = { error: () => undefined } as unknown as Parameters<ContainerStore["load"]>[0];

test("the container store: names, prefixes, a pod's containers, and what survives a reload", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-store-"));
  try {
    const s = new ContainerStore(dir);
    const a = rec("aa11", "p1");
    const b = rec("aa22", "p1");
    const infra = rec("bb33", "p1", "infra");
    for (const r of [a, b, infra]) {
      s.reserve(r.name, r.id, (h) => `taken by ${h}`);
      s.add(r);
      await s.save(r);
    }
    assert.throws(() => s.reserve(a.name, "other", (h) => `taken by ${h}`), (e: unknown) => e instanceof AlreadyExists && /taken by aa11/.test((e as Error).message));
    assert.equal(s.find("aa1"), a);
    assert.throws(() => s.find("aa"), InvalidArgument, "an ambiguous prefix");
    assert.throws(() => s.find("bb"), NotFound, "infra containers are not CRI containers");
    assert.equal(s.find("bb", ["infra"]), infra);
    assert.equal(s.findOrUndefined("cc"), undefined);
    assert.throws(() => s.find(""), InvalidArgument);
    assert.deepEqual(s.containersOf("p1"), [a, b]);
    assert.equal(s.infraOf("p1"), infra);

    await s.deleteFile(b.id);
    assert.ok(s.holds(b), "memory keeps a record until forget");
    s.forget(b);
    assert.ok(!s.holds(b));
    s.reserve(b.name, "new", () => "");

    const again = new ContainerStore(dir);
    assert.deepEqual((await again.load(log)).map((r) => r.id).sort(), ["aa11", "bb33"]);
    assert.throws(() => again.reserve(a.name, "x", (h) => h), AlreadyExists, "names come back with their records");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
