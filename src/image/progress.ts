// A running pull's progress: bytes received per layer, logged every interval (one line per
// pull) and handed to the metrics sink as gauges while the pull runs.
import { codeName } from "../errors.js";
import type { Logger } from "../log.js";

export interface LayerProgress {
  digest: string;
  done: number;
  total: number;
}

/** Where pull figures go (the metrics endpoint); every method is cheap and never throws. */
export interface PullRecorder {
  started(): void;
  /** Compressed bytes received, as they arrive. */
  bytes(n: number): void;
  /** Layers already present (reused) and downloaded, once the pull knows them. */
  layers(reused: number, pulled: number): void;
  progress(image: string, layers: readonly LayerProgress[]): void;
  /** The pull ended: `failure` is the gRPC code's name when it failed. */
  finished(image: string, seconds: number, failure?: string): void;
}

export class PullProgress {
  private readonly layers = new Map<string, LayerProgress>();
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();

  constructor(private readonly image: string, intervalMs: number, private readonly log: Logger, private readonly recorder: PullRecorder | undefined) {
    recorder?.started();
    this.timer = setInterval(() => this.report(), intervalMs);
    this.timer.unref();
  }

  /** Registers a layer to download; returns the callback told its attempt's bytes so far. */
  layer(digest: string, total: number): (bytes: number) => void {
    const p: LayerProgress = { digest, done: 0, total };
    this.layers.set(digest, p);
    return (bytes) => {
      // A retried download starts again from 0: every byte received still counts once in the total.
      this.recorder?.bytes(bytes >= p.done ? bytes - p.done : bytes);
      p.done = bytes;
    };
  }

  layerCounts(reused: number, pulled: number): void {
    this.recorder?.layers(reused, pulled);
  }

  private report(): void {
    const layers = [...this.layers.values()];
    const done = layers.reduce((n, l) => n + l.done, 0);
    const total = layers.reduce((n, l) => n + l.total, 0);
    this.log.info({
      image: this.image,
      seconds: Math.round((performance.now() - this.started) / 1000),
      done, total,
      layers: layers.map((l) => `${l.digest.slice(7, 19)} ${l.done}/${l.total}`),
    }, "pull progress");
    this.recorder?.progress(this.image, layers);
  }

  finish(err?: unknown): void {
    clearInterval(this.timer);
    this.recorder?.finished(this.image, (performance.now() - this.started) / 1000, err === undefined ? undefined : codeName(err));
  }
}
