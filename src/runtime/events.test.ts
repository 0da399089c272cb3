import assert from "node:assert/strict";
import { test } from "node:test";
import { EventBus, type LifecycleEvent, type Rendering } from "./events.js";

const rendering: Rendering<string> = { render: (e) => `${e.id}:${e.kind}`, sizeOf: (p) => p.length };
const ev = (id: string, kind: LifecycleEvent["kind"]): LifecycleEvent => ({ id, kind, sandboxId: "pod", at: 1n });

function drainAll<P>(sub: { next(): P | undefined }): P[] {
  const out: P[] = [];
  for (let p = sub.next(); p !== undefined; p = sub.next()) out.push(p);
  return out;
}

test("every subscriber gets every event in order; a closed one gets no more", () => {
  const bus = new EventBus<string>();
  bus.serving(rendering);
  const a = bus.subscribe({ event() {}, cutOff: () => assert.fail("a cut off"), ended() {} });
  const b = bus.subscribe({ event() {}, cutOff: () => assert.fail("b cut off"), ended() {} });
  assert.equal(bus.subscribers(), 2);
  bus.publish(ev("c1", "created"));
  bus.publish(ev("c1", "started"));
  assert.deepEqual(drainAll(a), ["c1:created", "c1:started"]);
  b.close();
  bus.publish(ev("c1", "stopped"));
  assert.deepEqual(drainAll(a), ["c1:stopped"]);
  assert.deepEqual(drainAll(b), []);
  assert.equal(bus.subscribers(), 1);
});

test("a subscriber past its bound is cut off and its events counted; the others keep theirs", () => {
  const bus = new EventBus<string>({ events: 3, bytes: 1000 });
  bus.serving(rendering);
  const cuts: number[] = [];
  const slow = bus.subscribe({ event() {}, cutOff: (n) => cuts.push(n), ended() {} });
  const fast = bus.subscribe({ event() {}, cutOff: () => assert.fail("fast cut off"), ended() {} });
  for (let i = 0; i < 5; i++) {
    bus.publish(ev(`c${i}`, "created"));
    assert.equal(fast.next(), `c${i}:created`);
  }
  assert.deepEqual(cuts, [4], "3 queued + the one that did not fit");
  assert.equal(slow.closed, true);
  assert.equal(slow.dropped, 4);
  assert.equal(bus.droppedTotal(), 4);
  assert.equal(bus.subscribers(), 1);
});

test("the byte bound cuts off too", () => {
  const bus = new EventBus<string>({ events: 100, bytes: 20 });
  bus.serving(rendering);
  let cut = 0;
  bus.subscribe({ event() {}, cutOff: (n) => (cut = n), ended() {} });
  bus.publish(ev("aaaaaaaa", "created")); // 16 bytes
  assert.equal(cut, 0);
  bus.publish(ev("b", "created"));
  assert.equal(cut, 2);
});

test("events published before serving are rendered then and replayed to early subscribers", () => {
  const bus = new EventBus<string>();
  const state = new Map<string, string>([["c1", "running"]]);
  bus.publish(ev("c1", "stopped"));
  state.set("c1", "exited");
  bus.serving({ render: (e) => `${e.id}:${e.kind}:${state.get(e.id)}`, sizeOf: (p) => p.length });
  const a = bus.subscribe({ event() {}, cutOff: () => assert.fail(), ended() {} });
  const b = bus.subscribe({ event() {}, cutOff: () => assert.fail(), ended() {} });
  assert.deepEqual(drainAll(a), ["c1:stopped:exited"]);
  assert.deepEqual(drainAll(b), ["c1:stopped:exited"]);
});

test("nothing is rendered while nobody listens", () => {
  let renders = 0;
  const bus = new EventBus<string>();
  bus.serving({ render: (e) => (renders++, e.id), sizeOf: (p) => p.length });
  bus.publish(ev("c1", "created"));
  assert.equal(renders, 0);
});

test("close ends every subscription", () => {
  const bus = new EventBus<string>();
  bus.serving(rendering);
  let ended = 0;
  const a = bus.subscribe({ event() {}, cutOff: () => assert.fail(), ended: () => ended++ });
  bus.subscribe({ event() {}, cutOff: () => assert.fail(), ended: () => ended++ });
  bus.close();
  assert.equal(ended, 2);
  assert.equal(a.closed, true);
  assert.equal(bus.subscribers(), 0);
});

test("an event whose payload cannot be built is counted, not thrown at the publisher", () => {
  const bus = new EventBus<string>();
  bus.serving({ render: () => { throw new Error("boom"); }, sizeOf: (p) => p.length });
  bus.subscribe({ event: () => assert.fail(), cutOff: () => assert.fail(), ended() {} });
  bus.publish(ev("c1", "created"));
  assert.equal(bus.droppedTotal(), 1);
});
