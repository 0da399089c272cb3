import assert from "node:assert/strict";
import { test } from "node:test";
import { runcMessage } from "./runc.js";

test("runcMessage takes runc's logrus messages out of its stderr", () => {
  const cases: Array<[string, string]> = [
    [`time="2026-11-25T22:23:42Z" level=error msg="exec failed: container does not exist"\n`, "exec failed: container does not exist"],
    [
      `time="t" level=error msg="exec failed: unable to start container process: exec: \\"nonexistent\\": executable file not found in $PATH"\n`,
      `exec failed: unable to start container process: exec: "nonexistent": executable file not found in $PATH`,
    ],
    [`time="t" level=error msg="a"\ntime="t" level=error msg="b"\n`, "a; b"],
    ["plain text error\n", "plain text error"],
    ["", ""],
  ];
  for (const [stderr, want] of cases) assert.equal(runcMessage(stderr), want);
});
