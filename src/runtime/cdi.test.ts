import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { pino } from "pino";
import { FailedPrecondition, InvalidArgument } from "../errors.js";
import { applyCdiEdits, CdiRegistry, parseCdiSpec, parseQualifiedName, requestedCdiDevices, type OciSpecWithHooks, type ResolvedCdiEdits } from "./cdi.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function capturingLogger() {
  const lines: string[] = [];
  const log = pino({ level: "debug" }, new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } }));
  return { log, lines };
}

test("fully-qualified names: vendor.com/class=name, anything else is InvalidArgument", () => {
  assert.deepEqual(parseQualifiedName("vendor.com/gpu=0"), { kind: "vendor.com/gpu", device: "0" });
  assert.deepEqual(parseQualifiedName("nvidia.com/gpu=GPU-1a:2"), { kind: "nvidia.com/gpu", device: "GPU-1a:2" });
  for (const bad of ["gpu0", "vendor.com/gpu", "vendor.com=gpu", "-v.com/gpu=0", "vendor.com/gpu/x=0", "vendor.com/gpu=", "vendor.com/gpu=-x"]) {
    assert.throws(() => parseQualifiedName(bad), (e: unknown) => e instanceof InvalidArgument && e.message.includes(bad), bad);
  }
});

test("requested devices: CDI_devices, then cdi.k8s.io/* annotations (comma lists), each once", () => {
  const names = requestedCdiDevices({
    CDIDevices: [{ name: "a.com/x=1" }],
    annotations: { "cdi.k8s.io/b": "a.com/x=2, a.com/x=1", "cdi.k8s.io/a": "a.com/x=3", "other.io/c": "a.com/x=9" },
  });
  assert.deepEqual(names, ["a.com/x=1", "a.com/x=3", "a.com/x=2"]);
  assert.deepEqual(requestedCdiDevices({ CDIDevices: [], annotations: {} }), []);
});

test("spec files are validated: version, kind, device names, absolute paths without ..", () => {
  const ok = { cdiVersion: "0.6.0", kind: "vendor.com/dev", devices: [{ name: "d0", containerEdits: { env: ["A=1"] } }] };
  const spec = parseCdiSpec(JSON.stringify(ok), "json");
  assert.equal(spec.kind, "vendor.com/dev");
  assert.deepEqual(spec.devices.get("d0"), { env: ["A=1"] });
  const bad: Array<[unknown, RegExp]> = [
    [{ ...ok, cdiVersion: "one" }, /cdiVersion "one" is not a semantic version/],
    [{ ...ok, cdiVersion: "9.0.0" }, /newer than berth knows/],
    [{ ...ok, kind: "nokind" }, /kind "nokind" is not vendor.com\/class/],
    [{ ...ok, devices: [] }, /at least one device/],
    [{ ...ok, devices: [{ name: "bad name" }] }, /devices\[0\].name "bad name"/],
    [{ ...ok, devices: [{ name: "d" }, { name: "d" }] }, /defined twice/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { deviceNodes: [{ path: "dev/x" }] } }] }, /deviceNodes\[0\].path must be an absolute path/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { mounts: [{ hostPath: "/a/../etc", containerPath: "/x" }] } }] }, /must not contain "\.\."/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { hooks: [{ hookName: "prerun", path: "/bin/true" }] } }] }, /hookName "prerun"/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { env: ["NOEQUALS"] } }] }, /not NAME=value/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { deviceNodes: [{ path: "/dev/x", permissions: "rx" }] } }] }, /permissions "rx"/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { surprise: 1 } }] }, /surprise is not a CDI container edit/],
    [{ ...ok, devices: [{ name: "d", containerEdits: { intelRdt: { closID: "x" } } }] }, /intelRdt is not supported/],
  ];
  for (const [doc, re] of bad) assert.throws(() => parseCdiSpec(JSON.stringify(doc), "json"), re, JSON.stringify(doc));
  assert.throws(() => parseCdiSpec("{", "json"), /not valid JSON/);
  assert.throws(() => parseCdiSpec("a: &x 1", "yaml"), /not valid YAML: line 1: anchors/);
});

function baseSpec(): OciSpecWithHooks {
  return {
    ociVersion: "1.0.2",
    process: { terminal: false, user: { uid: 0, gid: 0, additionalGids: [0] }, args: ["sh"], env: ["PATH=/bin", "A=old"], cwd: "/", capabilities: { bounding: [], effective: [], permitted: [], inheritable: [], ambient: [] }, noNewPrivileges: false },
    root: { path: "/r", readonly: false },
    mounts: [{ destination: "/proc", type: "proc", source: "proc" }, { destination: "/data", type: "bind", source: "/old", options: ["rbind"] }],
    annotations: {},
    linux: { resources: { devices: [{ allow: false, access: "rwm" }] }, cgroupsPath: "/c", namespaces: [], devices: [{ path: "/dev/fuse", type: "c", major: 10, minor: 229 }] },
  };
}

test("applyCdiEdits: env replaces by name, nodes get cgroup rules, mounts replace by destination, hooks and gids added; input untouched", () => {
  const spec = baseSpec();
  const before = JSON.stringify(spec);
  const edits: ResolvedCdiEdits = {
    env: ["A=new", "B=2"],
    deviceNodes: [
      { path: "/dev/vendor0", type: "c", major: 1, minor: 3, fileMode: 0o666, permissions: "rw" },
      { path: "/dev/fuse", type: "c", major: 10, minor: 229, permissions: "rwm" },
    ],
    mounts: [{ hostPath: "/new", containerPath: "/data", options: ["ro"] }, { hostPath: "/lib/x.so", containerPath: "/lib/x.so", type: "bind", options: ["bind", "ro"] }],
    hooks: [{ hookName: "createContainer", path: "/bin/hook", args: ["hook", "x"], timeout: 5 }, { hookName: "poststop", path: "/bin/post" }],
    additionalGids: [44, 0, 44],
  };
  const out = applyCdiEdits(spec, edits);
  assert.equal(JSON.stringify(spec), before, "the input spec is not changed");
  assert.deepEqual(out.process.env, ["PATH=/bin", "A=new", "B=2"]);
  assert.deepEqual(out.process.user.additionalGids, [0, 44]);
  assert.deepEqual(out.linux.devices, [
    { path: "/dev/vendor0", type: "c", major: 1, minor: 3, fileMode: 0o666 },
    { path: "/dev/fuse", type: "c", major: 10, minor: 229 },
  ]);
  assert.deepEqual(out.linux.resources.devices, [
    { allow: false, access: "rwm" },
    { allow: true, type: "c", major: 1, minor: 3, access: "rw" },
    { allow: true, type: "c", major: 10, minor: 229, access: "rwm" },
  ]);
  assert.deepEqual(out.mounts, [
    { destination: "/proc", type: "proc", source: "proc" },
    { destination: "/data", type: "bind", source: "/new", options: ["rbind", "ro"] },
    { destination: "/lib/x.so", type: "bind", source: "/lib/x.so", options: ["bind", "ro"] },
  ]);
  assert.deepEqual(out.hooks, { createContainer: [{ path: "/bin/hook", args: ["hook", "x"], timeout: 5 }], poststop: [{ path: "/bin/post" }] });
  const twice = applyCdiEdits(spec, {
    env: ["C=1", "C=2"], hooks: [], additionalGids: [],
    deviceNodes: [{ path: "/dev/v", type: "c", major: 1, minor: 3, permissions: "r" }, { path: "/dev/v", type: "c", major: 1, minor: 5, permissions: "rw" }],
    mounts: [{ hostPath: "/a", containerPath: "/m" }, { hostPath: "/b", containerPath: "/m" }],
  });
  assert.deepEqual(twice.process.env, ["PATH=/bin", "A=old", "C=2"]);
  assert.deepEqual(twice.linux.devices.map((d) => `${d.path} ${d.minor}`), ["/dev/fuse 229", "/dev/v 5"]);
  assert.deepEqual(twice.mounts.map((m) => `${m.destination} ${m.source}`), ["/proc proc", "/data /old", "/m /b"]);
  const none = applyCdiEdits(spec, { env: [], deviceNodes: [], mounts: [], hooks: [], additionalGids: [] });
  assert.deepEqual(none, spec);
});

test("registry: later dirs override earlier, same-dir duplicates conflict, bad files skipped with a reason, changes picked up", async () => {
  const low = await mkdtemp(path.join(tmpdir(), "berth-cdi-low-"));
  const high = await mkdtemp(path.join(tmpdir(), "berth-cdi-high-"));
  dirs.push(low, high);
  const { log, lines } = capturingLogger();
  const reg = new CdiRegistry([low, high, path.join(low, "missing")], log);
  const spec = (kind: string, devices: Record<string, string[]>, common: string[] = []) => JSON.stringify({
    cdiVersion: "0.6.0", kind, containerEdits: { env: common },
    devices: Object.entries(devices).map(([name, env]) => ({ name, containerEdits: { env } })),
  });
  await writeFile(path.join(low, "a.json"), spec("v.com/x", { one: ["WHO=low"], two: ["TWO=low"] }, ["COMMON=1"]));
  await writeFile(path.join(high, "b.yaml"), "cdiVersion: 0.6.0\nkind: v.com/x\ndevices:\n- name: one\n  containerEdits:\n    env: [WHO=high]\n");
  await writeFile(path.join(high, "broken.json"), "{not json");
  await writeFile(path.join(high, "notes.txt"), "ignored");
  assert.deepEqual((await reg.resolve(["v.com/x=one"])).env, ["WHO=high"]);
  assert.deepEqual((await reg.resolve(["v.com/x=two", "v.com/x=one"])).env, ["COMMON=1", "TWO=low", "WHO=high"]);
  assert.ok(lines.some((l) => l.includes("CDI spec file skipped") && l.includes("broken.json") && l.includes("not valid JSON")), lines.join(""));

  await assert.rejects(reg.resolve(["v.com/x=three", "v.com/y=1"]), (e: unknown) => e instanceof InvalidArgument
    && e.message.includes('"v.com/x=three", "v.com/y=1"') && e.message.includes(low) && e.message.includes(high)
    && e.message.includes(`spec files skipped: ${path.join(high, "broken.json")}: not valid JSON`));
  await assert.rejects(reg.resolve(["not-qualified"]), InvalidArgument);

  // Nothing changed: the files are not read again.
  const loads = () => lines.filter((l) => l.includes("CDI spec loaded") || l.includes("CDI spec file skipped")).length;
  const n = loads();
  await reg.resolve(["v.com/x=one"]);
  assert.equal(loads(), n);

  // Rewritten in place (same dir mtime), added, and a same-dir duplicate.
  await writeFile(path.join(low, "a.json"), spec("v.com/x", { one: ["WHO=low"], two: ["TWO=changed"] }));
  assert.deepEqual((await reg.resolve(["v.com/x=two"])).env, ["TWO=changed"]);
  await writeFile(path.join(high, "c.json"), spec("v.com/x", { one: ["WHO=dup"], three: ["THREE=3"] }));
  assert.deepEqual((await reg.resolve(["v.com/x=three"])).env, ["THREE=3"]);
  await assert.rejects(reg.resolve(["v.com/x=one"]), (e: unknown) => e instanceof InvalidArgument && /defined in both .*b\.yaml and .*c\.json/.test(e.message));
  await rm(path.join(high, "c.json"));
  assert.deepEqual((await reg.resolve(["v.com/x=one"])).env, ["WHO=high"]);
  await assert.rejects(reg.resolve(["v.com/x=three"]), InvalidArgument);
});

test("registry: device nodes take type, numbers and mode from the host node; a missing node or mount source fails", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "berth-cdi-host-"));
  dirs.push(dir);
  const { log } = capturingLogger();
  const reg = new CdiRegistry([dir], log);
  await writeFile(path.join(dir, "v.json"), JSON.stringify({
    cdiVersion: "0.7.0", kind: "v.com/null",
    devices: [
      { name: "n", containerEdits: { deviceNodes: [{ path: "/dev/vnull", hostPath: "/dev/null", permissions: "rw", gid: 5 }], mounts: [{ hostPath: dir, containerPath: "/cdi" }] } },
      { name: "gone", containerEdits: { deviceNodes: [{ path: "/dev/no-such-device-node" }] } },
      { name: "nomount", containerEdits: { mounts: [{ hostPath: "/no/such/dir", containerPath: "/x" }] } },
      { name: "given", containerEdits: { deviceNodes: [{ path: "/dev/made-up", type: "c", major: 240, minor: 7, fileMode: 0o600 }] } },
    ],
  }));
  const st = await stat("/dev/null");
  const e = await reg.resolve(["v.com/null=n"]);
  assert.deepEqual(e.deviceNodes, [{ path: "/dev/vnull", type: "c", major: 1, minor: 3, fileMode: st.mode & 0o7777, permissions: "rw", gid: 5 }]);
  assert.deepEqual(e.mounts, [{ hostPath: dir, containerPath: "/cdi" }]);
  assert.deepEqual((await reg.resolve(["v.com/null=given"])).deviceNodes, [{ path: "/dev/made-up", type: "c", major: 240, minor: 7, fileMode: 0o600, permissions: "rwm" }]);
  await assert.rejects(reg.resolve(["v.com/null=gone"]), (err: unknown) => err instanceof FailedPrecondition && err.message.includes("/dev/no-such-device-node"));
  await assert.rejects(reg.resolve(["v.com/null=nomount"]), (err: unknown) => err instanceof FailedPrecondition && err.message.includes("/no/such/dir"));
});
