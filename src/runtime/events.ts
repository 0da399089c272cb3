// The lifecycle event bus: the pod and container layers publish what happened to an object
// (created, started, stopped, deleted) at the moment it happens, under that object's lock, so
// each object's events come in order. Every subscriber gets every event through its own bounded
// queue; one that falls behind is cut off (its queued events are dropped and counted) instead of
// holding memory or the others back. The payload a subscriber receives is rendered once per
// event by whoever serves the events (the CRI front), when the event is published, so it shows
// the state of that moment. Events published before serving() starts (start-up recovery: exits
// while berthd was down) are kept and replayed to the subscribers of the first minute.

export type LifecycleKind = "created" | "started" | "stopped" | "deleted";

export interface LifecycleEvent {
  kind: LifecycleKind;
  /** The container's id; a pod's own events carry the pod's id. */
  id: string;
  sandboxId: string;
  /** When it happened, ns since the epoch. */
  at: bigint;
}

/** What the pod and container layers need of the bus. */
export interface LifecyclePublisher {
  publish(event: LifecycleEvent): void;
}

/** Most events a subscriber may have waiting before it is cut off. */
export const MAX_QUEUED_EVENTS = 1024;
/** Most payload bytes a subscriber may have waiting before it is cut off. */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** How long after serving() a new subscriber still receives the events recovery published. */
export const RECOVERY_REPLAY_MS = 60_000;

export interface Rendering<P> {
  /** The payload for an event; undefined: nothing to send for it. */
  render(event: LifecycleEvent): P | undefined;
  sizeOf(payload: P): number;
}

export interface SubscriberHandlers {
  /** An event was queued. */
  event(): void;
  /** The subscriber was cut off (it is unsubscribed), having lost `dropped` events. */
  cutOff(dropped: number): void;
  /** The bus closed (berthd is shutting down). */
  ended(): void;
}

export class Subscription<P> {
  private queue: Array<{ payload: P; size: number }> = [];
  private head = 0;
  private bytes = 0;
  /** Events this subscriber did not get because it was cut off. */
  dropped = 0;
  closed = false;

  constructor(private readonly bus: EventBus<P>, private readonly limits: { events: number; bytes: number }, private readonly on: SubscriberHandlers) {}

  /** The next queued payload, or undefined when none waits. */
  next(): P | undefined {
    if (this.head >= this.queue.length) return undefined;
    const item = this.queue[this.head]!;
    this.queue[this.head++] = undefined as never;
    this.bytes -= item.size;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    return item.payload;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Ends the subscription from the bus's side. */
  end(): void {
    this.close();
    this.on.ended();
  }

  /** Unsubscribes; queued events are let go. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.bytes = 0;
    this.bus.unsubscribe(this);
  }

  /** Queues `payload`, or cuts the subscriber off when it would exceed its bound. */
  offer(payload: P, size: number): void {
    if (this.closed) return;
    if (this.queued + 1 > this.limits.events || this.bytes + size > this.limits.bytes) {
      this.dropped = this.queued + 1;
      this.bus.countDropped(this.dropped);
      this.close();
      this.on.cutOff(this.dropped);
      return;
    }
    this.queue.push({ payload, size });
    this.bytes += size;
    this.on.event();
  }
}

export class EventBus<P> implements LifecyclePublisher {
  private readonly subs = new Set<Subscription<P>>();
  private rendering: Rendering<P> | undefined;
  /** Events published before serving(), then (rendered) the replay for early subscribers. */
  private early: LifecycleEvent[] | undefined = [];
  private replay: Array<{ payload: P; size: number }> = [];
  private dropped = 0;

  constructor(private readonly limits = { events: MAX_QUEUED_EVENTS, bytes: MAX_QUEUED_BYTES }) {}

  publish(event: LifecycleEvent): void {
    if (!this.rendering) {
      // Before serving: nobody can listen yet. Bounded like a subscriber; the oldest go first.
      if (this.early!.push(event) > this.limits.events) {
        this.early!.shift();
        this.dropped++;
      }
      return;
    }
    if (this.subs.size === 0) return;
    let payload: P | undefined;
    try {
      payload = this.rendering.render(event);
    } catch {
      // The lifecycle step that published this must not fail for it: the event is lost, and counted.
      this.dropped += this.subs.size;
      return;
    }
    if (payload === undefined) return;
    const size = this.rendering.sizeOf(payload);
    for (const s of [...this.subs]) s.offer(payload, size);
  }

  /**
   * Events can be served from now on: renders what start-up published (against the state as
   * it is now, recovery done) for the subscribers of the next `replayMs`.
   */
  serving(rendering: Rendering<P>, replayMs = RECOVERY_REPLAY_MS): void {
    this.rendering = rendering;
    for (const e of this.early ?? []) {
      let payload: P | undefined;
      try {
        payload = rendering.render(e);
      } catch {
        this.dropped++;
      }
      if (payload !== undefined) this.replay.push({ payload, size: rendering.sizeOf(payload) });
    }
    this.early = undefined;
    if (this.replay.length > 0) setTimeout(() => (this.replay = []), replayMs).unref();
  }

  /** A new subscriber; the start-up replay (if still kept) is queued for it first. */
  subscribe(on: SubscriberHandlers): Subscription<P> {
    const s = new Subscription<P>(this, this.limits, on);
    this.subs.add(s);
    for (const r of this.replay) s.offer(r.payload, r.size);
    return s;
  }

  /** Ends every subscription (shutdown: open streams would hold the server's graceful stop). */
  close(): void {
    for (const s of [...this.subs]) s.end();
  }

  /** Subscribers now. */
  subscribers(): number {
    return this.subs.size;
  }

  /** Events not delivered since start: to subscribers that were cut off, or beyond the start-up bound. */
  droppedTotal(): number {
    return this.dropped;
  }

  /** @internal (Subscription) */
  unsubscribe(s: Subscription<P>): void {
    this.subs.delete(s);
  }

  /** @internal (Subscription) */
  countDropped(n: number): void {
    this.dropped += n;
  }
}
