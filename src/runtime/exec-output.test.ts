import assert from "node:assert/strict";
import { test } from "node:test";
import { EXEC_RESPONSE_BUDGET, fitExecResponse } from "./exec-output.js";

test("fitExecResponse: both streams together stay within the budget, stdout first", () => {
  const b = (n: number) => Buffer.alloc(n, 0x61);
  const cases: Array<[number, number, number, number, number]> = [
    // stdout, stderr, budget -> stdout, stderr
    [3, 4, 10, 3, 4],
    [8, 4, 10, 8, 2],
    [12, 4, 10, 10, 0],
    [0, 12, 10, 0, 10],
    [16 << 20, 100, EXEC_RESPONSE_BUDGET, EXEC_RESPONSE_BUDGET, 0],
  ];
  for (const [o, e, budget, wo, we] of cases) {
    const r = fitExecResponse(b(o), b(e), budget);
    assert.deepEqual([r.stdout.length, r.stderr.length], [wo, we], `${o}+${e} in ${budget}`);
  }
});
