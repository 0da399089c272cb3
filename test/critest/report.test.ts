import assert from "node:assert/strict";
import { test } from "node:test";
import { benchmarkSummary, firstLine, isExpectedFailure, parseGinkgoJson, summaryLine } from "./report.js";

const spec = (texts: string[], leaf: string, state: string, failure?: object) => ({
  ContainerHierarchyTexts: texts, LeafNodeType: "It", LeafNodeText: leaf, State: state, RunTime: 1_500_000_000, ...(failure ? { Failure: failure } : {}),
});

test("parseGinkgoJson: counts It specs by state; filtered-out specs are not counted as skipped", () => {
  const report = JSON.stringify([{
    SpecReports: [
      { LeafNodeType: "SynchronizedBeforeSuite", State: "passed" },
      spec(["[k8s.io] Runtime info", "runtime should support returning runtime info"], "runtime should return version info [Conformance]", "passed"),
      spec(["[k8s.io] Image Manager"], "public image with digest should be pulled and removed [Conformance]", "failed",
        { Message: "failed to pull image\n\nExpected\n    <error>", Location: { FileName: "/src/image.go", LineNumber: 42 } }),
      spec(["[k8s.io] Container"], "panics", "panicked", { Message: "boom", ForwardedPanic: "nil pointer" }),
      spec(["[k8s.io] Security Context"], "apparmor", "skipped", { Message: "Skip apparmor test since apparmor is not enabled" }),
      spec(["[k8s.io] Container runtime"], "benchmark", "skipped"),
      spec(["[k8s.io] Container runtime"], "pending one", "pending"),
      { LeafNodeType: "AfterSuite", State: "failed", Failure: { Message: "cleanup failed", Location: { FileName: "x.go", LineNumber: 1 } } },
    ],
  }]);
  const s = parseGinkgoJson(report);
  assert.equal(summaryLine(s), "1 passed, 2 failed, 2 skipped");
  assert.equal(s.notSelected, 1);
  assert.deepEqual(s.suiteFailures, ["AfterSuite: cleanup failed (x.go:1)"]);
  const digest = s.specs.find((x) => x.name.includes("digest"))!;
  assert.equal(digest.name, "[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]");
  assert.equal(digest.location, "/src/image.go:42");
  assert.equal(digest.seconds, 1.5);
  assert.equal(firstLine(digest.message), "failed to pull image");
  assert.ok(isExpectedFailure(digest.name));
  assert.equal(s.specs.find((x) => x.name.endsWith("panics"))!.message, "boom\nnil pointer");
});

test("firstLine: the gRPC status under gomega's Unexpected error, else the first line", () => {
  const cases: Array<[string, string]> = [
    ["Unexpected error:\n    <*status.Error | 0xc0006c6e70>: \n    rpc error: code = Unimplemented desc = not yet\n    {", "rpc error: code = Unimplemented desc = not yet"],
    ["Unexpected error:\n    <*errors.errorString | 0xc>: \n    timed out\n", "timed out"],
    ["failed to pull image: rpc error: code = NotFound desc = gone\nUnexpected error:", "failed to pull image: rpc error: code = NotFound desc = gone"],
    ["Expected\n    <string>: a\nto equal\n    <string>: b", "Expected"],
    ["failed to create container\nUnexpected error:\n <*status.Error>:\n rpc error: code = Internal desc = runc", "failed to create container rpc error: code = Internal desc = runc"],
    ["", ""],
    ['failed to create container: rpc error: code = Internal desc = runc create x: time="t" level=warning msg="cannot toggle freezer"\ntime="t" level=error msg="runc create failed: unable to apply caps: operation not permitted"',
      'failed to create container: rpc error: code = Internal desc = runc create x: time="t" level=warning msg="cannot toggle freezer" ... runc create failed: unable to apply caps: operation not permitted'],
  ];
  for (const [message, want] of cases) assert.equal(firstLine(message), want);
  assert.equal(firstLine("x".repeat(500)).length, 400);
});

test("parseGinkgoJson: an empty report is zero of everything", () => {
  assert.equal(summaryLine(parseGinkgoJson("[]")), "0 passed, 0 failed, 0 skipped");
});

test("benchmarkSummary: median and p90 per operation, unset durations ignored", () => {
  const data = JSON.stringify({
    operationsNames: ["CreateContainer", "StartContainer"],
    datapoints: [1, 2, 3, 4].map((n) => ({ operationsDurationsNs: [n * 1e6, n === 4 ? 0 : n * 10e6] })),
  });
  assert.deepEqual(benchmarkSummary(data), [
    { op: "CreateContainer", samples: 4, medianMs: 2.5, p90Ms: 4 },
    { op: "StartContainer", samples: 3, medianMs: 20, p90Ms: 30 },
  ]);
});
