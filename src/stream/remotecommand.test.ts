import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeStatus, internalError, nonZeroExit, ResizeDecoder, SUCCESS } from "./remotecommand.js";

describe("remote command status", () => {
  const table: Array<[string, Parameters<typeof encodeStatus>[1], string]> = [
    ["v4.channel.k8s.io", SUCCESS, `{"metadata":{},"status":"Success"}`],
    ["v5.channel.k8s.io", nonZeroExit(["sh", "-c", "exit 2"], 2),
      `{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}`],
    ["v4.channel.k8s.io", internalError("boom"),
      `{"metadata":{},"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","details":{"causes":[{"message":"boom"}]},"code":500}`],
    ["v3.channel.k8s.io", SUCCESS, ""],
    ["v2.channel.k8s.io", nonZeroExit(["false"], 1), "command terminated with non-zero exit code: error executing command [false], exit code 1"],
    ["channel.k8s.io", internalError("boom"), "Internal error occurred: boom"],
    ["base64.channel.k8s.io", SUCCESS, ""],
  ];
  for (const [proto, st, want] of table) {
    test(`${proto}: ${st.reason ?? st.status}`, () => assert.equal(encodeStatus(proto, st).toString(), want));
  }
});

describe("ResizeDecoder", () => {
  test("splits concatenated objects across arbitrary chunk boundaries", () => {
    const text = `{"Width":80,"Height":24}\n{"Height":40, "Width":120}{"Width":1,"Height":2,"x":"}{"}`;
    for (const step of [1, 3, 7, text.length]) {
      const d = new ResizeDecoder();
      const got = [];
      for (let i = 0; i < text.length; i += step) got.push(...d.push(text.slice(i, i + step)));
      assert.deepEqual(got, [{ width: 80, height: 24 }, { width: 120, height: 40 }, { width: 1, height: 2 }]);
    }
  });

  test("refuses what is not a size", () => {
    assert.throws(() => new ResizeDecoder().push("[1,2]"), /expected a JSON object/);
    assert.throws(() => new ResizeDecoder().push(`{"Width":-1,"Height":2}`), /0\.\.65535/);
    assert.throws(() => new ResizeDecoder().push(`{"Width":"80","Height":2}`), /0\.\.65535/);
    assert.throws(() => new ResizeDecoder().push(`{"Width":` + " ".repeat(5000)), /longer than 4096/);
  });
});
