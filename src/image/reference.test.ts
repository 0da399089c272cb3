import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidArgument } from "../errors.js";
import { formatReference, isLoopbackRegistry, parseReference } from "./reference.js";

const D = "sha256:" + "ab".repeat(32);

test("references normalize as kubelet users expect", () => {
  const table: Array<[string, string]> = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["busybox:1.36", "docker.io/library/busybox:1.36"],
    ["library/busybox", "docker.io/library/busybox:latest"],
    ["user/app:v1", "docker.io/user/app:v1"],
    ["docker.io/busybox", "docker.io/library/busybox:latest"],
    ["index.docker.io/library/busybox:x", "docker.io/library/busybox:x"],
    ["registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"],
    ["127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000/a/b/c:tag"],
    ["localhost/app", "localhost/app:latest"],
    ["localhost:5000/app", "localhost:5000/app:latest"],
    ["[::1]:5000/app:1", "[::1]:5000/app:1"],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`quay.io/a/b:tag@${D}`, `quay.io/a/b@${D}`],
    ["my-registry.example.com:443/team/app_x__y.z-1:1.0_rc-2", "my-registry.example.com:443/team/app_x__y.z-1:1.0_rc-2"],
  ];
  for (const [input, want] of table) assert.equal(formatReference(parseReference(input)), want, input);
});

test("invalid references are InvalidArgument naming the problem", () => {
  const table: Array<[string, RegExp]> = [
    ["", /empty/],
    ["Busybox", /lowercase/],
    ["busy box", /whitespace/],
    ["busybox:", /tag ""/],
    ["busybox:-x", /tag/],
    ["busybox@sha256:abc", /64 lowercase hex/],
    ["busybox@md5:abcd", /not supported/],
    ["a//b", /empty path component/],
    ["/busybox", /empty path component/],
    ["a/b_-c", /path component/],
    ["host:99999/a", /out of range/],
    [":tag", /no repository/],
    ["x/" + "a".repeat(300), /longer than 255/],
  ];
  for (const [input, re] of table) {
    assert.throws(() => parseReference(input), (e: unknown) => e instanceof InvalidArgument && re.test((e as Error).message), input);
  }
});

test("loopback registries", () => {
  assert.equal(isLoopbackRegistry("127.0.0.1:5000"), true);
  assert.equal(isLoopbackRegistry("localhost"), true);
  assert.equal(isLoopbackRegistry("[::1]:80"), true);
  assert.equal(isLoopbackRegistry("docker.io"), false);
  assert.equal(isLoopbackRegistry("127.example.com"), false);
});
