import assert from "node:assert/strict";
import { test } from "node:test";
import { parse } from "smol-toml";
import { parseMountPoints, planIptablesCleanup } from "./host.js";
import { CATALOG, MIRRORED_REGISTRIES, mirrorPath } from "./images.js";
import { imageConfig, imageManifest, manifestList, MEDIA, sha256, type Layer } from "./oci.js";
import { parseLdd } from "./rootfs.js";
import { berthConfig, containerdConfig, containerdHostsToml } from "./runtimes.js";

test("mirrorPath: the repository path a mirror serves, and the tag", () => {
  const cases: Array<[string, { repo: string; tag: string }]> = [
    ["registry.k8s.io/e2e-test-images/busybox:1.29-2", { repo: "e2e-test-images/busybox", tag: "1.29-2" }],
    ["gcr.io/k8s-staging-cri-tools/test-image-tags:3", { repo: "k8s-staging-cri-tools/test-image-tags", tag: "3" }],
    ["registry.k8s.io/pause:3.10", { repo: "pause", tag: "3.10" }],
    ["docker.io/busybox:latest", { repo: "library/busybox", tag: "latest" }],
    ["public.ecr.aws/docker/library/busybox:1.35.0-glibc", { repo: "docker/library/busybox", tag: "1.35.0-glibc" }],
  ];
  for (const [ref, want] of cases) assert.deepEqual(mirrorPath(ref), want, ref);
  assert.throws(() => mirrorPath("busybox"), /not a host\/path:tag/);
});

test("catalog: every image critest names is there, each under a mirrored registry", () => {
  const refs = CATALOG.flatMap((c) => c.refs);
  for (const want of [
    "registry.k8s.io/e2e-test-images/busybox:1.29-2", "registry.k8s.io/e2e-test-images/nginx:1.14-2",
    "registry.k8s.io/e2e-test-images/httpd:2.4.39-4", "registry.k8s.io/e2e-test-images/nonewprivs:1.3",
    "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest", "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
    "gcr.io/k8s-staging-cri-tools/test-image-tags:1", "gcr.io/k8s-staging-cri-tools/test-image-tag:all", "registry.k8s.io/pause:3.10",
  ]) assert.ok(refs.includes(want), want);
  for (const ref of refs) assert.ok(MIRRORED_REGISTRIES.includes(ref.split("/")[0]!), ref);
  assert.equal(new Set(refs).size, refs.length, "no reference twice");
  const users = Object.fromEntries(CATALOG.filter((c) => c.refs[0]!.includes("test-image-user-")).map((c) => [c.refs[0]!.split("/").pop(), c.settings.user]));
  assert.deepEqual(users, {
    "test-image-user-uid:latest": "1002", "test-image-user-username:latest": "www-data",
    "test-image-user-uid-group:latest": "1003:1004", "test-image-user-username-group:latest": "www-data:1004",
  });
});

test("oci: config, manifest and list documents reference each other by digest", () => {
  const layer: Layer = { mediaType: MEDIA.oci.layer, digest: sha256("gz"), diffId: sha256("tar"), bytes: Buffer.from("gz") };
  const amd64 = { os: "linux", architecture: "amd64" };
  const config = imageConfig("oci", amd64, [layer], { cmd: ["sh"], user: "1000", exposedPorts: ["80/tcp"] });
  const doc = JSON.parse(config.bytes.toString());
  assert.equal(config.digest, sha256(config.bytes));
  assert.deepEqual(doc.rootfs, { type: "layers", diff_ids: [layer.diffId] });
  assert.deepEqual(doc.config, { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"], User: "1000", ExposedPorts: { "80/tcp": {} } });
  const manifest = imageManifest("oci", config, [layer]);
  const m = JSON.parse(manifest.bytes.toString());
  assert.equal(m.config.digest, config.digest);
  assert.deepEqual(m.layers, [{ mediaType: MEDIA.oci.layer, digest: layer.digest, size: 2 }]);
  const list = JSON.parse(manifestList("docker", [{ manifest, platform: amd64 }]).bytes.toString());
  assert.equal(list.mediaType, MEDIA.docker.list);
  assert.deepEqual(list.manifests[0], { mediaType: MEDIA.oci.manifest, digest: manifest.digest, size: manifest.bytes.length, platform: amd64 });
});

test("parseLdd: resolved libraries and the loader, not the vdso", () => {
  const out = [
    "\tlinux-vdso.so.1 (0x00007ffd)",
    "\tlibresolv.so.2 => /lib/x86_64-linux-gnu/libresolv.so.2 (0x00007f9b)",
    "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f9b)",
    "\t/lib64/ld-linux-x86-64.so.2 (0x00007f9b)",
  ].join("\n");
  assert.deepEqual(parseLdd(out), ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libresolv.so.2", "/lib64/ld-linux-x86-64.so.2"]);
});

test("parseMountPoints: field 5, octal escapes undone", () => {
  const info = "36 25 0:32 / /tmp/berth-critest-x/berth/root rw - tmpfs tmpfs rw\n37 25 0:33 / /tmp/a\\040b rw - tmpfs tmpfs rw\n";
  assert.deepEqual(parseMountPoints(info), ["/tmp/berth-critest-x/berth/root", "/tmp/a b"]);
});

test("runtime configs: berth mirrors every registry to the harness registry; containerd reads certs.d", () => {
  const b = parse(berthConfig("/tmp/run/berth", "127.0.0.1:5555")) as Record<string, any>;
  assert.equal(b.socket, "/tmp/run/berth/berth.sock");
  assert.equal(b.cni.conf_dir, "/tmp/run/berth/cni");
  assert.equal(b.image.pause_image, "registry.k8s.io/pause:3.10");
  for (const r of MIRRORED_REGISTRIES) assert.deepEqual(b.image.mirrors[r], ["http://127.0.0.1:5555"]);
  const c = parse(containerdConfig("/tmp/run/containerd")) as Record<string, any>;
  const cri = c.plugins["io.containerd.grpc.v1.cri"];
  assert.equal(c.grpc.address, "/tmp/run/containerd/containerd.sock");
  assert.equal(cri.restrict_oom_score_adj, true);
  assert.equal(cri.registry.config_path, "/tmp/run/containerd/certs.d");
  assert.equal(cri.cni.conf_dir, "/tmp/run/containerd/cni");
  const hosts = parse(containerdHostsToml("127.0.0.1:5555")) as Record<string, any>;
  assert.equal(hosts.server, "http://127.0.0.1:5555");
  assert.deepEqual(hosts.host["http://127.0.0.1:5555"].capabilities, ["pull", "resolve"]);
});

test("planIptablesCleanup: our rules and per-pod chains go, shared chains and other networks stay", () => {
  const save = [
    "*nat",
    ":POSTROUTING ACCEPT [0:0]",
    ":CNI-HOSTPORT-DNAT - [0:0]",
    ":CNI-aaa - [0:0]",
    ":CNI-DN-bbb - [0:0]",
    '-A POSTROUTING -s 10.93.0.5/32 -m comment --comment "name: \\"berth-critest\\" id: \\"c1\\"" -j CNI-aaa',
    '-A POSTROUTING -s 10.93.128.7/32 -m comment --comment "name: \\"berth-critest-containerd\\" id: \\"c2\\"" -j CNI-zzz',
    "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
    '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"berth-critest\\" id: \\"c1\\"" -m multiport --dports 12000 -j CNI-DN-bbb',
    '-A CNI-aaa -d 10.93.0.0/16 -m comment --comment "name: \\"berth-critest\\" id: \\"c1\\"" -j ACCEPT',
    "-A CNI-DN-bbb -s 10.93.0.0/16 -p tcp -m tcp --dport 12000 -j CNI-HOSTPORT-SETMARK",
    "-A CNI-DN-bbb -p tcp -m tcp --dport 12000 -j DNAT --to-destination 10.93.0.5:80",
    "COMMIT",
  ].join("\n");
  const plan = planIptablesCleanup(save, "berth-critest");
  assert.deepEqual(plan.script, [
    '-D POSTROUTING -s 10.93.0.5/32 -m comment --comment "name: \\"berth-critest\\" id: \\"c1\\"" -j CNI-aaa',
    '-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"berth-critest\\" id: \\"c1\\"" -m multiport --dports 12000 -j CNI-DN-bbb',
    "-F CNI-aaa", "-X CNI-aaa", "-F CNI-DN-bbb", "-X CNI-DN-bbb",
  ]);
  assert.equal(plan.rules.length, 5);
  assert.deepEqual(planIptablesCleanup(save, "other").script, []);
});
