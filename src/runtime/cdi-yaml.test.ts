import assert from "node:assert/strict";
import { test } from "node:test";
import { parseYamlSubset, YamlSubsetError } from "./cdi-yaml.js";

test("a CDI spec as nvidia-ctk writes it (sequences at the key's indent, nested mappings, comments)", () => {
  const text = `---
# generated
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      major: 195
      minor: 0
      fileMode: 0o666
    env: [NVIDIA_VISIBLE_DEVICES=0, "X=a b"]
- name: all   # trailing comment
  containerEdits:
    deviceNodes:
      - path: /dev/nvidia1
containerEdits:
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-ctk
    args:
    - nvidia-ctk
    - 'hook'
    - "update-ldcache"
  mounts:
  - {hostPath: /usr/lib/libcuda.so, containerPath: /usr/lib/libcuda.so, options: [ro, nosuid, bind]}
  annotations: {}
  empty:
`;
  assert.deepEqual(parseYamlSubset(text), {
    cdiVersion: "0.5.0",
    kind: "nvidia.com/gpu",
    devices: [
      { name: "0", containerEdits: { deviceNodes: [{ path: "/dev/nvidia0", major: 195, minor: 0, fileMode: 0o666 }], env: ["NVIDIA_VISIBLE_DEVICES=0", "X=a b"] } },
      { name: "all", containerEdits: { deviceNodes: [{ path: "/dev/nvidia1" }] } },
    ],
    containerEdits: {
      hooks: [{ hookName: "createContainer", path: "/usr/bin/nvidia-ctk", args: ["nvidia-ctk", "hook", "update-ldcache"] }],
      mounts: [{ hostPath: "/usr/lib/libcuda.so", containerPath: "/usr/lib/libcuda.so", options: ["ro", "nosuid", "bind"] }],
      annotations: {},
      empty: null,
    },
  });
});

test("scalars follow the YAML 1.2 core schema; quotes keep strings", () => {
  const table: Array<[string, unknown]> = [
    ["a: 1", { a: 1 }],
    ["a: -12", { a: -12 }],
    ["a: 0x1f", { a: 31 }],
    ["a: 0o17", { a: 15 }],
    ["a: 1.5", { a: 1.5 }],
    ["a: true", { a: true }],
    ["a: False", { a: false }],
    ["a: ~", { a: null }],
    ["a: null", { a: null }],
    ['a: "1"', { a: "1" }],
    ["a: 'true'", { a: "true" }],
    ["a: 0.5.0", { a: "0.5.0" }],
    ["a: yes", { a: "yes" }],
    ['a: "tab\\there \\"q\\" \\u00e9"', { a: 'tab\there "q" é' }],
    ["a: 'it''s'", { a: "it's" }],
    ["a: x # c", { a: "x" }],
    ["a: 'x # not a comment'", { a: "x # not a comment" }],
    ["a: http://host:80/p", { a: "http://host:80/p" }],
    ['"quoted key": v', { "quoted key": "v" }],
    ["a: [1, [2, 3], {b: c}]", { a: [1, [2, 3], { b: "c" }] }],
    ["a: []", { a: [] }],
    ["- a\n- - b\n  - c\n-\n  d: 1", ["a", ["b", "c"], { d: 1 }]],
    ["a: a long\n  folded   value\n  - still text\nb: 1", { a: "a long folded   value - still text", b: 1 }],
    ["- one\n  two\n- three", ["one two", "three"]],
    ["", null],
    ["# only a comment\n", null],
  ];
  for (const [text, want] of table) assert.deepEqual(parseYamlSubset(text), want, text);
});

test("what the subset does not read is refused with its line", () => {
  const table: Array<[string, RegExp]> = [
    ["a: &x 1\nb: *x", /line 1: anchors and aliases/],
    ["a: !!str 1", /line 1: tags/],
    ["a: |\n  text", /line 1: block scalars/],
    ["a: >\n  text", /line 1: block scalars/],
    ["a: 1\na: 2", /line 2: duplicate key "a"/],
    ["a:\n\tb: 1", /line 2: tab in indentation/],
    ["a: [1,\n  2]", /line 1: flow sequence not closed/],
    ["a: 'open\n  close'", /line 1: unterminated single-quoted/],
    ["a: 1\n---\nb: 2", /line 2: more than one YAML document/],
    ["a:\n  b: 1\n c: 2", /line 3: unexpected content|line 3: bad indentation/],
    ["a: b: c", /line 1: a mapping cannot start on the same line/],
    ["? a\n: b", /line 1: /],
    ["<<: {a: 1}", /line 1: merge keys/],
    ['a: "\\q"', /line 1: unknown escape/],
    ["a:\n  - x\n  y: 1", /line 3: /],
    ["a: x\n  b: 1", /line 2: a mapping cannot continue a value/],
    ["a: x\n\n  y", /line 3: a blank or comment line inside a folded scalar/],
    ["a: 'x'\n  y", /line 2: bad indentation/],
  ];
  for (const [text, re] of table) {
    assert.throws(() => parseYamlSubset(text), (err: unknown) => err instanceof YamlSubsetError && re.test(err.message), text);
  }
});
