// How a workload is measured: rows of samples per runtime, filled by iterations that alternate
// which runtime goes first, after warm-up iterations that are not recorded. A runtime that
// answers UNIMPLEMENTED (or fails) is marked for the rows of that workload and skipped from then
// on, so one missing RPC never stops the run.
import { status } from "@grpc/grpc-js";
import { performance } from "node:perf_hooks";
import type { RuntimeName, RuntimeUnderTest } from "./runtimes.js";
import type { Unit } from "./stats.js";

export interface Row {
  key: string;
  title: string;
  unit: Unit;
  samples: Record<RuntimeName, number[]>;
  /** Why a runtime has no figure: "n/a (UNIMPLEMENTED: RunPodSandbox)", "failed: …". */
  missing: Partial<Record<RuntimeName, string>>;
  /** Extra text shown under the table. */
  note?: string;
}

export interface Group {
  title: string;
  /** How the figures were taken (iterations, sizes). */
  method: string;
  rows: Row[];
  notes: string[];
}

export function newRow(key: string, title: string, unit: Unit = "ms"): Row {
  return { key, title, unit, samples: { berth: [], containerd: [], crio: [] }, missing: {} };
}

export function newGroup(title: string, method: string, rows: Row[]): Group {
  return { title, method, rows, notes: [] };
}

/** The gRPC status code of a client error, when it has one. */
function grpcCode(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof (err as { code: unknown }).code === "number" ? (err as { code: number }).code : undefined;
}

export class StepFailure extends Error {
  constructor(readonly step: string, override readonly cause: unknown) {
    super(`${step}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/** Why a runtime has no figure, in the report's words. */
export function describeFailure(err: unknown): string {
  const inner = err instanceof StepFailure ? err.cause : err;
  const step = err instanceof StepFailure ? err.step : undefined;
  if (grpcCode(inner) === status.UNIMPLEMENTED) return `n/a (UNIMPLEMENTED${step ? `: ${step}` : ""})`;
  const msg = (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 160);
  return `failed: ${msg}`;
}

/** Runs `fn` as the named step, so a failure names the RPC or command that failed. */
export async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StepFailure) throw err;
    throw new StepFailure(name, err);
  }
}

/** Milliseconds `fn` takes, as the named step. */
export async function timed(name: string, fn: () => Promise<unknown>): Promise<number> {
  return step(name, async () => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  });
}

export interface Iteration {
  /** Records one sample of a row (ignored during warm-up). */
  record(row: Row, ms: number): void;
  warmup: boolean;
  index: number;
}

export interface AlternateOptions {
  iterations: number;
  warmup: number;
  aborted: () => boolean;
  log: (msg: string) => void;
}

/**
 * Runs `body` for each runtime, `warmup + iterations` times, alternating which runtime goes first.
 * A throw disables that runtime for this group and marks every row without a reason yet.
 */
export async function alternate(
  rts: RuntimeUnderTest[],
  rows: Row[],
  opts: AlternateOptions,
  body: (rt: RuntimeUnderTest, it: Iteration) => Promise<void>,
): Promise<void> {
  const disabled = new Set<RuntimeName>(rts.filter((rt) => rows.every((r) => r.missing[rt.name])).map((rt) => rt.name));
  for (let i = 0; i < opts.warmup + opts.iterations; i++) {
    if (opts.aborted()) throw new Error("interrupted");
    const order = i % 2 === 0 ? rts : [...rts].reverse();
    for (const rt of order) {
      if (disabled.has(rt.name)) continue;
      const warmup = i < opts.warmup;
      const it: Iteration = { warmup, index: i, record: (row, ms) => { if (!warmup) row.samples[rt.name].push(ms); } };
      try {
        await body(rt, it);
      } catch (err) {
        if (opts.aborted()) throw err;
        disabled.add(rt.name);
        const why = describeFailure(err);
        opts.log(`${rt.name}: ${why}`);
        for (const r of rows) {
          if (r.missing[rt.name]) continue;
          r.missing[rt.name] = why;
          r.samples[rt.name] = [];
        }
      }
    }
  }
}
