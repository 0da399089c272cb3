// Summaries of timing samples and their formatting for the report: medians, spreads, ratios.

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

/** Median (mean of the middle two for an even count), min and max; undefined for no samples. */
export function summarize(samples: readonly number[]): Summary | undefined {
  if (samples.length === 0) return undefined;
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { n: s.length, median, min: s[0]!, max: s[s.length - 1]! };
}

/** a/b to two decimals, or "–" when either side is missing or b is zero. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || b === 0) return "–";
  return (a / b).toFixed(2);
}

export type Unit = "ms" | "MiB" | "KiB";

/** A value in its unit with precision that suits its size. */
export function formatValue(v: number, unit: Unit): string {
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${unit}`;
}

export function formatSpread(s: Summary | undefined, unit: Unit): string {
  if (!s) return "–";
  if (s.n === 1) return "(1 sample)";
  return `${formatValue(s.min, unit)} – ${formatValue(s.max, unit)}`;
}
