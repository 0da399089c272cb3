// Field-by-field tests of the OCI spec berth generates for a container.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ContainerConfig, type DeepPartial, MountPropagation, NamespaceMode, NamespaceOption, PodSandboxMetadata, SecurityProfile_ProfileType, SupplementalGroupsPolicy } from "../gen/api.js";
import { BerthError, FailedPrecondition } from "../errors.js";
import { BERTH_APPARMOR_PROFILE, defaultAppArmorProfile, parseLoadedProfiles, selinuxLabels } from "./lsm.js";
import type { ImageRunConfig } from "../image/types.js";
import { buildSpec, containerArgs, containerCapabilities, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_PATH, effectiveOomScoreAdj, seccompFileNeeded, type HostFacts, type SpecInput } from "./spec.js";
import type { SandboxRef } from "./types.js";
import { parseGroup, parsePasswd, processIds } from "./user.js";
import { boundingCapabilities } from "./container-host.js";


const PASSWD = `root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
default-user:x:1000:1000::/home/default-user:/bin/sh
`;
const GROUP = `root:x:0:
www-data:x:33:
nogroup:x:65534:
default-user:x:1000:
group-defined-in-image:x:50000:default-user
audio:x:29:default-user,www-data
`;

function sandbox(over: Partial<SandboxRef> = {}): SandboxRef {
  return {
    id: "pod1",
    metadata: PodSandboxMetadata.fromPartial({ name: "p", namespace: "ns", uid: "u1", attempt: 0 }),
    state: "ready",
    netnsPath: "/run/berth/netns/pod1",
    ipcnsPath: "/run/berth/ipcns/pod1",
    utsnsPath: "/run/berth/utsns/pod1",
    namespaceOptions: NamespaceOption.fromPartial({}),
    hostname: "pod-host",
    resolvConfPath: "/state/pod1/resolv.conf",
    hostsPath: "/state/pod1/hosts",
    hostnamePath: "/state/pod1/hostname",
    shmPath: "/state/pod1/shm",
    cgroupParent: "/berth-test-ctr/pod1",
    logDirectory: "/var/log/pods/x",
    runtimeHandler: "runc",
    labels: {},
    annotations: {},
    sysctls: {},
    privileged: false,
    ...over,
  };
}

const HOST: HostFacts = { cgroupVersion: 1, ownOomScoreAdj: 0, restrictOomScoreAdj: true, apparmor: false, selinux: false, swapAccounting: true, arch: "x64" };

function input(config: DeepPartial<ContainerConfig>, over: Partial<SpecInput> = {}, image: ImageRunConfig = { Cmd: ["sh"] }): SpecInput {
  return {
    id: "c1",
    config: ContainerConfig.fromPartial({ metadata: { name: "ctr" }, ...config }),
    image,
    imageName: "busybox:latest",
    sandbox: sandbox(),
    rootfs: "/snap/c1/rootfs",
    cgroupsPath: "/berth-test-ctr/pod1/berth-c1",
    userDb: { passwd: parsePasswd(PASSWD), groups: parseGroup(GROUP) },
    host: HOST,
    devices: [],
    seccompFiles: {},
    handler: { recursiveReadOnlyMounts: true },
    ...over,
  };
}

function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof BerthError && re.test(err.message));
}

describe("args by the Kubernetes rules", () => {
  const image = { Entrypoint: ["/ep"], Cmd: ["cmd1", "cmd2"] };
  const cases: Array<[string, { command?: string[]; args?: string[] }, ImageRunConfig, string[]]> = [
    ["image only", {}, image, ["/ep", "cmd1", "cmd2"]],
    ["command replaces entrypoint and cmd", { command: ["/bin/x"] }, image, ["/bin/x"]],
    ["args replace cmd", { args: ["a"] }, image, ["/ep", "a"]],
    ["command and args", { command: ["/bin/x"], args: ["a", "b"] }, image, ["/bin/x", "a", "b"]],
    ["cmd only image", {}, { Cmd: ["top"] }, ["top"]],
    ["args with no entrypoint", { args: ["sh", "-c", "x"] }, { Cmd: ["top"] }, ["sh", "-c", "x"]],
  ];
  for (const [name, cfg, img, want] of cases) {
    test(name, () => assert.deepEqual(containerArgs({ command: cfg.command ?? [], args: cfg.args ?? [] }, img), want));
  }
  test("nothing to run is InvalidArgument", () => rejects(() => containerArgs({ command: [], args: [] }, {}), /no command to run/));
});

describe("env, cwd, tty", () => {
  test("image env then config env, replacing by name; PATH, HOSTNAME and HOME defaults", () => {
    const { spec } = buildSpec(input({ envs: [{ key: "A", value: Buffer.from("config") }, { key: "C", value: Buffer.from("3") }] }, {}, { Cmd: ["sh"], Env: ["A=image", "B=2", "PATH=/custom"] }));
    assert.deepEqual(spec.process.env, ["PATH=/custom", "HOSTNAME=pod-host", "A=config", "B=2", "C=3", "HOME=/root"]);
  });
  test("PATH default when the image has none; HOME from the config wins", () => {
    const { spec } = buildSpec(input({ envs: [{ key: "HOME", value: Buffer.from("/h") }] }));
    assert.equal(spec.process.env[0], `PATH=${DEFAULT_PATH}`);
    assert.ok(spec.process.env.includes("HOME=/h"));
    assert.equal(spec.process.env.filter((e) => e.startsWith("HOME=")).length, 1);
  });
  test("cwd: config, then image, then /", () => {
    assert.equal(buildSpec(input({ workingDir: "/w" }, {}, { Cmd: ["sh"], WorkingDir: "/img" })).spec.process.cwd, "/w");
    assert.equal(buildSpec(input({}, {}, { Cmd: ["sh"], WorkingDir: "/img" })).spec.process.cwd, "/img");
    assert.equal(buildSpec(input({})).spec.process.cwd, "/");
    rejects(() => buildSpec(input({ workingDir: "rel" })), /must be an absolute path/);
  });
  test("tty sets process.terminal", () => {
    assert.equal(buildSpec(input({ tty: true })).spec.process.terminal, true);
    assert.equal(buildSpec(input({})).spec.process.terminal, false);
  });
});

describe("user and groups", () => {
  const cases: Array<[string, DeepPartial<ContainerConfig>, string | undefined, { uid: number; gid: number; extra?: number[] }]> = [
    ["image without User is root", {}, undefined, { uid: 0, gid: 0 }],
    ["image User by name", {}, "www-data", { uid: 33, gid: 33, extra: [29] }],
    ["image User uid known", {}, "1000", { uid: 1000, gid: 1000, extra: [50000, 29] }],
    ["image User uid unknown gets gid 0", {}, "1234", { uid: 1234, gid: 0 }],
    ["image User uid:gid", {}, "1003:1004", { uid: 1003, gid: 1004 }],
    ["image User name:gid", {}, "www-data:1004", { uid: 33, gid: 1004, extra: [29] }],
    ["image User name:group", {}, "www-data:nogroup", { uid: 33, gid: 65534, extra: [29] }],
    ["run_as_user overrides image", { linux: { securityContext: { runAsUser: { value: 1001n } } } }, "www-data", { uid: 1001, gid: 0 }],
    ["run_as_user + run_as_group", { linux: { securityContext: { runAsUser: { value: 1001n }, runAsGroup: { value: 1002n } } } }, undefined, { uid: 1001, gid: 1002 }],
    ["run_as_username", { linux: { securityContext: { runAsUsername: "nobody" } } }, undefined, { uid: 65534, gid: 65534 }],
    [
      "supplemental groups plus the image's groups for the user",
      { linux: { securityContext: { runAsUser: { value: 1000n }, supplementalGroups: [1234n, 5678n] } } },
      "1000",
      { uid: 1000, gid: 1000, extra: [1234, 5678, 50000, 29] },
    ],
    [
      "SupplementalGroupsPolicy Strict: only the primary and the requested groups",
      { linux: { securityContext: { runAsUser: { value: 1000n }, supplementalGroups: [1234n], supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict } } },
      "1000",
      { uid: 1000, gid: 1000, extra: [1234] },
    ],
    [
      "SupplementalGroupsPolicy Merge is the default",
      { linux: { securityContext: { runAsUser: { value: 1000n }, supplementalGroups: [1234n], supplementalGroupsPolicy: SupplementalGroupsPolicy.Merge } } },
      "1000",
      { uid: 1000, gid: 1000, extra: [1234, 50000, 29] },
    ],
  ];
  for (const [name, cfg, imageUser, want] of cases) {
    test(name, () => {
      const { spec } = buildSpec(input(cfg, {}, { Cmd: ["sh"], User: imageUser }));
      assert.equal(spec.process.user.uid, want.uid);
      assert.equal(spec.process.user.gid, want.gid);
      assert.deepEqual(spec.process.user.additionalGids, [want.gid, ...(want.extra ?? [])]);
    });
  }
  test("unknown names are errors naming the user", () => {
    rejects(() => buildSpec(input({}, {}, { Cmd: ["sh"], User: "ghost" })), /user "ghost" is not in the image's \/etc\/passwd/);
    rejects(() => buildSpec(input({}, {}, { Cmd: ["sh"], User: "www-data:ghosts" })), /group "ghosts"/);
    rejects(() => buildSpec(input({ linux: { securityContext: { runAsUsername: "ghost" } } })), /run_as_username "ghost"/);
  });
  test("run_as_group without a user is InvalidArgument", () => {
    rejects(() => buildSpec(input({ linux: { securityContext: { runAsGroup: { value: 5n } } } })), /run_as_group 5 is set without run_as_user/);
  });
  test("HOME comes from passwd", () => {
    const { spec } = buildSpec(input({}, {}, { Cmd: ["sh"], User: "www-data" }));
    assert.ok(spec.process.env.includes("HOME=/var/www"));
  });
});

describe("capabilities", () => {
  test("default set", () => assert.deepEqual(containerCapabilities(undefined).bounding, DEFAULT_CAPABILITIES));
  test("add and drop, with or without CAP_ prefix", () => {
    const c = containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { addCapabilities: ["NET_ADMIN"], dropCapabilities: ["CAP_NET_RAW", "chown"] } } } }).linux!.securityContext);
    assert.ok(c.bounding.includes("CAP_NET_ADMIN"));
    assert.ok(!c.bounding.includes("CAP_NET_RAW"));
    assert.ok(!c.effective.includes("CAP_CHOWN"));
    assert.deepEqual(c.inheritable, []);
    assert.deepEqual(c.ambient, []);
  });
  test("ambient capabilities are inheritable too (the kernel drops the rest), and held", () => {
    const c = containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { addCapabilities: ["NET_ADMIN"], addAmbientCapabilities: ["NET_ADMIN", "net_bind_service"] } } } }).linux!.securityContext);
    assert.deepEqual(c.ambient, ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    assert.deepEqual(c.inheritable, ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
    for (const set of [c.permitted, c.effective, c.bounding]) assert.ok(set.includes("CAP_NET_ADMIN") && set.includes("CAP_NET_BIND_SERVICE"));
    const dropped = containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { dropCapabilities: ["ALL"], addAmbientCapabilities: ["NET_ADMIN"] } } } }).linux!.securityContext);
    assert.deepEqual([dropped.ambient, dropped.inheritable], [[], []]);
  });
  test("drop ALL then add one", () => {
    const c = containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { addCapabilities: ["SYS_ADMIN"], dropCapabilities: ["ALL"] } } } }).linux!.securityContext);
    assert.deepEqual(c.bounding, ["CAP_SYS_ADMIN"]);
  });
  test("add ALL gives every capability; drop ALL gives none", () => {
    assert.equal(containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { addCapabilities: ["ALL"] } } } }).linux!.securityContext).bounding.length, 41);
    assert.deepEqual(containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { dropCapabilities: ["ALL"] } } } }).linux!.securityContext).bounding, []);
  });
  test("privileged and add ALL are limited to berthd's own bounding set (no CAP_SYS_RESOURCE here)", () => {
    const host = boundingCapabilities("Name:\tberthd\nCapBnd:\t000001fffeffffff\n")!;
    assert.equal(host.length, 40);
    assert.ok(!host.includes("CAP_SYS_RESOURCE"));
    const priv = containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { privileged: true } } }).linux!.securityContext, host);
    assert.deepEqual(priv.bounding, host);
    const all = containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { addCapabilities: ["ALL", "SYS_RESOURCE"] } } } }).linux!.securityContext, host);
    assert.ok(!all.permitted.includes("CAP_SYS_RESOURCE"));
    assert.equal(all.permitted.length, 40);
    assert.equal(boundingCapabilities("no caps line"), undefined);
  });
  test("unknown capability is InvalidArgument", () => {
    rejects(() => containerCapabilities(ContainerConfig.fromPartial({ linux: { securityContext: { capabilities: { addCapabilities: ["FLY"] } } } }).linux!.securityContext), /unknown capability "CAP_FLY"/);
  });
});

describe("privileged, readonly rootfs, no_new_privs, masked and readonly paths", () => {
  test("unprivileged defaults", () => {
    const { spec } = buildSpec(input({}));
    assert.deepEqual(spec.linux.maskedPaths, DEFAULT_MASKED_PATHS);
    assert.ok(spec.linux.readonlyPaths!.includes("/proc/sys"));
    assert.deepEqual(spec.linux.resources.devices, [{ allow: false, access: "rwm" }]);
    assert.deepEqual(spec.mounts.find((m) => m.destination === "/sys")!.options!.at(-1), "ro");
    assert.equal(spec.root.readonly, false);
    assert.equal(spec.process.noNewPrivileges, false);
  });
  test("privileged: all caps, all devices, rw sysfs, no masked paths, unconfined", () => {
    const { spec } = buildSpec(input(
      { linux: { securityContext: { privileged: true, seccompProfilePath: "runtime/default" } } },
      { sandbox: sandbox({ privileged: true }), devices: [{ containerPath: "/dev/kmsg", type: "c", major: 1, minor: 11, fileMode: 0o644, uid: 0, gid: 0, permissions: "rwm" }] },
    ));
    assert.equal(spec.process.capabilities.bounding.length, 41);
    assert.deepEqual(spec.linux.resources.devices, [{ allow: true, access: "rwm" }]);
    assert.equal(spec.linux.devices[0]!.path, "/dev/kmsg");
    assert.equal(spec.mounts.find((m) => m.destination === "/sys")!.options!.at(-1), "rw");
    assert.equal(spec.linux.maskedPaths, undefined);
    assert.equal(spec.linux.seccomp, undefined);
  });
  test("privileged container in an unprivileged pod is refused", () => {
    rejects(() => buildSpec(input({ linux: { securityContext: { privileged: true } } })), /privileged container needs a privileged pod/);
  });
  test("readonly rootfs makes the root and the pod's files read-only", () => {
    const { spec } = buildSpec(input({ linux: { securityContext: { readonlyRootfs: true } } }));
    assert.equal(spec.root.readonly, true);
    assert.equal(spec.mounts.find((m) => m.destination === "/etc/hosts")!.options!.at(-1), "ro");
  });
  test("no_new_privs, custom masked and readonly paths", () => {
    const { spec } = buildSpec(input({ linux: { securityContext: { noNewPrivs: true, maskedPaths: ["/bin/ls"], readonlyPaths: ["/tmp"] } } }));
    assert.equal(spec.process.noNewPrivileges, true);
    assert.deepEqual(spec.linux.maskedPaths, ["/bin/ls"]);
    assert.deepEqual(spec.linux.readonlyPaths, ["/tmp"]);
  });
});

describe("seccomp", () => {
  const kinds: Array<[string, DeepPartial<ContainerConfig>, "none" | "default" | "file"]> = [
    ["nil structured profile and no path is unconfined", {}, "none"],
    ["structured RuntimeDefault", { linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } } }, "default"],
    ["structured Unconfined", { linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } } } }, "none"],
    ["structured Localhost", { linux: { securityContext: { seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: "/p/block.json" } } } }, "file"],
    ["deprecated runtime/default", { linux: { securityContext: { seccompProfilePath: "runtime/default" } } }, "default"],
    ["deprecated docker/default", { linux: { securityContext: { seccompProfilePath: "docker/default" } } }, "default"],
    ["deprecated unconfined", { linux: { securityContext: { seccompProfilePath: "unconfined" } } }, "none"],
    ["deprecated localhost/<path>", { linux: { securityContext: { seccompProfilePath: "localhost//p/block.json" } } }, "file"],
  ];
  const file = JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["sethostname"], action: "SCMP_ACT_ERRNO" }] });
  for (const [name, cfg, want] of kinds) {
    test(name, () => {
      const i = input(cfg, { seccompFiles: { "/p/block.json": file } });
      const { spec } = buildSpec(i);
      if (want === "none") assert.equal(spec.linux.seccomp, undefined);
      if (want === "default") {
        assert.equal(spec.linux.seccomp!.defaultAction, "SCMP_ACT_ALLOW");
        assert.ok(spec.linux.seccomp!.syscalls!.some((r) => r.names.includes("kexec_load") && r.action === "SCMP_ACT_ERRNO"));
        assert.deepEqual(spec.linux.seccomp!.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
      }
      if (want === "file") {
        assert.equal(seccompFileNeeded(i.config), "/p/block.json");
        assert.deepEqual(spec.linux.seccomp!.syscalls, [{ names: ["sethostname"], action: "SCMP_ACT_ERRNO" }]);
      }
    });
  }
  test("a path without localhost/ is InvalidArgument", () => {
    rejects(() => buildSpec(input({ linux: { securityContext: { seccompProfilePath: "/p/block.json" } } })), /not one of "runtime\/default"/);
  });
  test("RuntimeDefault allows sethostname only with SYS_ADMIN", () => {
    const blocked = (cfg: DeepPartial<ContainerConfig>) => buildSpec(input(cfg)).spec.linux.seccomp!.syscalls!.some((r) => r.names.includes("sethostname"));
    assert.equal(blocked({ linux: { securityContext: { seccompProfilePath: "runtime/default" } } }), true);
    assert.equal(blocked({ linux: { securityContext: { seccompProfilePath: "runtime/default", capabilities: { addCapabilities: ["SYS_ADMIN"] } } } }), false);
  });
});

describe("AppArmor and SELinux", () => {
  const aa = (sc: DeepPartial<ContainerConfig>["linux"], host: Partial<HostFacts> = {}) => buildSpec(input({ linux: sc }, { host: { ...HOST, ...host } }));
  test("host without AppArmor: unset and Unconfined pass, RuntimeDefault and Localhost are FailedPrecondition", () => {
    assert.equal(aa({}).spec.process.apparmorProfile, undefined);
    assert.equal(aa({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Unconfined } } }).spec.process.apparmorProfile, undefined);
    assert.equal(aa({ securityContext: { apparmorProfile: "unconfined" } }).apparmor.kind, "none");
    const failed = (sc: DeepPartial<ContainerConfig>["linux"], re: RegExp) =>
      assert.throws(() => aa(sc), (err: unknown) => err instanceof FailedPrecondition && re.test(err.message) && /Unconfined or leave the profile unset/.test(err.message));
    failed({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } }, /AppArmor RuntimeDefault requested but AppArmor is not enabled on this host/);
    failed({ securityContext: { apparmorProfile: "runtime/default" } }, /RuntimeDefault/);
    failed({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: "p" } } }, /Localhost profile "p"/);
    failed({ securityContext: { apparmorProfile: "localhost/p" } }, /Localhost profile "p"/);
  });
  test("host with AppArmor: RuntimeDefault and unset get berth's profile, Localhost its own, privileged and Unconfined none", () => {
    const on = { apparmor: true };
    assert.equal(aa({}, on).spec.process.apparmorProfile, BERTH_APPARMOR_PROFILE);
    assert.deepEqual(aa({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } }, on).apparmor, { kind: "default", name: BERTH_APPARMOR_PROFILE });
    assert.equal(aa({ securityContext: { apparmorProfile: "runtime/default" } }, on).spec.process.apparmorProfile, BERTH_APPARMOR_PROFILE);
    assert.equal(aa({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: "localhost/mine" } } }, on).spec.process.apparmorProfile, "mine");
    assert.deepEqual(aa({ securityContext: { apparmorProfile: "localhost/mine" } }, on).apparmor, { kind: "localhost", name: "mine" });
    assert.equal(aa({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Unconfined } } }, on).spec.process.apparmorProfile, undefined);
    // The structured field wins over the deprecated string.
    assert.equal(aa({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Unconfined }, apparmorProfile: "localhost/mine" } }, on).apparmor.kind, "none");
    const privileged = buildSpec(input({ linux: { securityContext: { privileged: true } } }, { host: { ...HOST, apparmor: true }, sandbox: sandbox({ privileged: true }) }));
    assert.equal(privileged.spec.process.apparmorProfile, undefined);
    rejects(() => aa({ securityContext: { apparmorProfile: "bogus" } }, on), /apparmor_profile "bogus" is not/);
    rejects(() => aa({ securityContext: { apparmor: { profileType: SecurityProfile_ProfileType.Localhost } } }, on), /needs localhost_ref/);
  });
  test("berth's default profile names itself and denies mounts", () => {
    const text = defaultAppArmorProfile("berth-test");
    assert.match(text, /^profile berth-test flags=\(attach_disconnected,mediate_deleted\) \{$/m);
    assert.match(text, /^ {2}deny mount,$/m);
    assert.match(text, /^ {2}signal \(send,receive\) peer=berth-test,$/m);
    assert.equal(text.split("{").length, text.split("}").length);
    rejects(() => defaultAppArmorProfile("bad name\n"), /cannot hold/);
    assert.deepEqual([...parseLoadedProfiles("berth-default (enforce)\n/usr/bin/man (complain)\nsnap.x//y (enforce)\n")], ["berth-default", "/usr/bin/man", "snap.x//y"]);
  });
  test("SELinux options without SELinux are ignored with a note; with it they label the process and mounts", () => {
    const off = buildSpec(input({ linux: { securityContext: { selinuxOptions: { type: "spc_t", level: "s0:c1,c2" } } } }));
    assert.equal(off.spec.process.selinuxLabel, undefined);
    assert.equal(off.spec.linux.mountLabel, undefined);
    assert.match(off.ignored.join(), /SELinux options ::spc_t:s0:c1,c2 ignored: SELinux is not enabled on this host/);
    const on = buildSpec(input({ linux: { securityContext: { selinuxOptions: { type: "spc_t", level: "s0:c1,c2" } } } }, { host: { ...HOST, selinux: true } }));
    assert.equal(on.spec.process.selinuxLabel, "system_u:system_r:spc_t:s0:c1,c2");
    assert.equal(on.spec.linux.mountLabel, "system_u:object_r:container_file_t:s0:c1,c2");
    assert.deepEqual(on.ignored, []);
    assert.equal(selinuxLabels({ user: "", role: "", type: "", level: "" }, { selinux: true }).processLabel, undefined);
    assert.equal(selinuxLabels({ user: "u", role: "r", type: "t", level: "s1" }, { selinux: true }).processLabel, "u:r:t:s1");
    rejects(() => selinuxLabels({ user: "", role: "", type: "a:b", level: "" }, { selinux: true }), /selinux_options.type/);
    rejects(() => selinuxLabels({ user: "", role: "", type: "", level: "high" }, { selinux: true }), /MLS level/);
  });
});

describe("mounts", () => {
  test("pod files, shm and user binds with propagation, sorted by depth", () => {
    const { spec } = buildSpec(input({
      mounts: [
        { containerPath: "/data/sub", hostPath: "/h/sub", propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER },
        { containerPath: "/data", hostPath: "/h/data", readonly: true },
        { containerPath: "/shared", hostPath: "/h/shared", propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL },
      ],
    }));
    const dests = spec.mounts.map((m) => m.destination);
    assert.deepEqual(dests.slice(-3), ["/data", "/shared", "/data/sub"]);
    assert.deepEqual(spec.mounts.find((m) => m.destination === "/data")!.options, ["rbind", "rprivate", "ro"]);
    assert.deepEqual(spec.mounts.find((m) => m.destination === "/data/sub")!.options, ["rbind", "rslave", "rw"]);
    assert.deepEqual(spec.mounts.find((m) => m.destination === "/shared")!.options, ["rbind", "rshared", "rw"]);
    assert.equal(spec.linux.rootfsPropagation, "rshared");
    assert.equal(spec.mounts.find((m) => m.destination === "/etc/resolv.conf")!.source, "/state/pod1/resolv.conf");
    assert.equal(spec.mounts.find((m) => m.destination === "/etc/hostname")!.source, "/state/pod1/hostname");
    assert.equal(spec.mounts.find((m) => m.destination === "/dev/shm")!.source, "/state/pod1/shm");
  });
  test("a user mount replaces the default at the same path", () => {
    const { spec } = buildSpec(input({ mounts: [{ containerPath: "/etc/hosts", hostPath: "/mine/hosts" }] }));
    const hosts = spec.mounts.filter((m) => m.destination === "/etc/hosts");
    assert.equal(hosts.length, 1);
    assert.equal(hosts[0]!.source, "/mine/hosts");
  });
  test("relative paths are refused", () => {
    rejects(() => buildSpec(input({ mounts: [{ containerPath: "data", hostPath: "/h" }] })), /must be absolute/);
    rejects(() => buildSpec(input({ mounts: [{ containerPath: "/data", hostPath: "h" }] })), /must be absolute/);
  });
  test("recursive read-only: rro with ro, refused unless read-only, private and supported by the handler", () => {
    const rro = { containerPath: "/data", hostPath: "/h/data", readonly: true, recursiveReadOnly: true };
    assert.deepEqual(buildSpec(input({ mounts: [rro] })).spec.mounts.at(-1)!.options, ["rbind", "rprivate", "ro", "rro"]);
    rejects(() => buildSpec(input({ mounts: [{ ...rro, readonly: false }] })), /mount \/data: recursive_read_only needs readonly: true/);
    rejects(() => buildSpec(input({ mounts: [{ ...rro, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }] })), /needs propagation PROPAGATION_PRIVATE, not PROPAGATION_HOST_TO_CONTAINER/);
    rejects(() => buildSpec(input({ mounts: [{ ...rro, propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }] })), /not PROPAGATION_BIDIRECTIONAL/);
    assert.throws(() => buildSpec(input({ mounts: [rro] }, { handler: { recursiveReadOnlyMounts: false } })), (err: unknown) => err instanceof FailedPrecondition && /Linux 5.12/.test(err.message));
  });
  test("devices become nodes and cgroup allow rules", () => {
    const { spec } = buildSpec(input({}, { devices: [{ containerPath: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0, permissions: "rw" }] }));
    assert.deepEqual(spec.linux.devices, [{ path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }]);
    assert.deepEqual(spec.linux.resources.devices!.at(-1), { allow: true, type: "c", major: 10, minor: 229, access: "rw" });
  });
});

describe("namespaces", () => {
  const types = (i: SpecInput) => buildSpec(i).spec.linux.namespaces;
  test("joins the pod's net, ipc and uts; private pid and mount", () => {
    assert.deepEqual(types(input({})), [
      { type: "mount" },
      { type: "network", path: "/run/berth/netns/pod1" },
      { type: "ipc", path: "/run/berth/ipcns/pod1" },
      { type: "uts", path: "/run/berth/utsns/pod1" },
      { type: "pid" },
    ]);
  });
  test("pid POD joins the pod's pid namespace", () => {
    const ns = types(input({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } }, { sandbox: sandbox({ pidnsPath: "/proc/42/ns/pid", namespaceOptions: NamespaceOption.fromPartial({ pid: NamespaceMode.POD }) }) }));
    assert.deepEqual(ns.find((n) => n.type === "pid"), { type: "pid", path: "/proc/42/ns/pid" });
  });
  test("pid POD (the proto default) in a pod without a shared namespace gets a private one", () => {
    assert.deepEqual(types(input({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } })).find((n) => n.type === "pid"), { type: "pid" });
    const hostPod = sandbox({ namespaceOptions: NamespaceOption.fromPartial({ pid: NamespaceMode.NODE }) });
    assert.equal(types(input({}, { sandbox: hostPod })).find((n) => n.type === "pid"), undefined);
  });
  test("pid NODE uses the host's; TARGET joins the target's", () => {
    assert.equal(types(input({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } } })).find((n) => n.type === "pid"), undefined);
    const ns = types(input({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: "t" } } } }, { targetPidnsPath: "/proc/7/ns/pid" }));
    assert.deepEqual(ns.find((n) => n.type === "pid"), { type: "pid", path: "/proc/7/ns/pid" });
  });
  test("host network pod: no network namespace entry", () => {
    const ns = types(input({}, { sandbox: sandbox({ netnsPath: undefined, utsnsPath: undefined, namespaceOptions: NamespaceOption.fromPartial({ network: NamespaceMode.NODE }) }) }));
    assert.equal(ns.find((n) => n.type === "network"), undefined);
    assert.equal(ns.find((n) => n.type === "uts"), undefined);
  });
  test("cgroup v2 adds a cgroup namespace", () => {
    assert.ok(types(input({}, { host: { ...HOST, cgroupVersion: 2 } })).some((n) => n.type === "cgroup"));
  });
});

describe("resources and cgroup", () => {
  test("cpu, memory (swap = limit), hugepages", () => {
    const { spec } = buildSpec(input({ linux: { resources: { cpuShares: 512n, cpuQuota: 50000n, cpuPeriod: 100000n, cpusetCpus: "0", cpusetMems: "0", memoryLimitInBytes: 16777216n, hugepageLimits: [{ pageSize: "2MB", limit: 4194304n }] } } }));
    assert.deepEqual(spec.linux.resources.cpu, { shares: 512, quota: 50000, period: 100000, cpus: "0", mems: "0" });
    assert.deepEqual(spec.linux.resources.memory, { limit: 16777216, swap: 16777216 });
    assert.deepEqual(spec.linux.resources.hugepageLimits, [{ pageSize: "2MB", limit: 4194304 }]);
    assert.equal(spec.linux.cgroupsPath, "/berth-test-ctr/pod1/berth-c1");
  });
  test("unified needs cgroup v2", () => {
    rejects(() => buildSpec(input({ linux: { resources: { unified: { "memory.high": "1000000" } } } })), /needs cgroup v2/);
    const { spec } = buildSpec(input({ linux: { resources: { unified: { "memory.high": "1000000" } } } }, { host: { ...HOST, cgroupVersion: 2 } }));
    assert.deepEqual(spec.linux.resources.unified, { "memory.high": "1000000" });
  });
  test("oom_score_adj is clamped to berthd's own when lowering is not permitted", () => {
    assert.equal(effectiveOomScoreAdj(-998, { ownOomScoreAdj: 0, restrictOomScoreAdj: true }), 0);
    assert.equal(effectiveOomScoreAdj(-998, { ownOomScoreAdj: -500, restrictOomScoreAdj: true }), -500);
    assert.equal(effectiveOomScoreAdj(-998, { ownOomScoreAdj: 0, restrictOomScoreAdj: false }), -998);
    assert.equal(effectiveOomScoreAdj(1000, { ownOomScoreAdj: 0, restrictOomScoreAdj: true }), 1000);
    assert.equal(effectiveOomScoreAdj(5000, { ownOomScoreAdj: 0, restrictOomScoreAdj: true }), 1000);
    const { spec } = buildSpec(input({ linux: { resources: { oomScoreAdj: -997n } } }, { host: { ...HOST, ownOomScoreAdj: 200 } }));
    assert.equal(spec.process.oomScoreAdj, 200);
  });
  test("pod sysctls and annotations", () => {
    const { spec } = buildSpec(input({ annotations: { a: "1" } }, { sandbox: sandbox({ sysctls: { "kernel.shm_rmid_forced": "1" } }) }));
    assert.deepEqual(spec.linux.sysctl, { "kernel.shm_rmid_forced": "1" });
    assert.equal(spec.annotations.a, "1");
    assert.equal(spec.annotations["io.kubernetes.cri.sandbox-id"], "pod1");
    assert.equal(spec.annotations["io.kubernetes.cri.container-name"], "ctr");
  });
});

describe("the ids a process holds", () => {
  test("from /proc/<pid>/status", () => {
    const status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nFDSize:\t64\nGroups:\t1000 1234 50000 \nNStgid:\t1\n";
    assert.deepEqual(processIds(status), { uid: 1000n, gid: 1000n, supplementalGroups: [1000n, 1234n, 50000n] });
    assert.deepEqual(processIds("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n")!.supplementalGroups, []);
    assert.equal(processIds("Name:\tx\n"), undefined);
  });
});

describe("user-namespaced pod", () => {
  test("joins the pod's pinned user namespace by path, with the mappings runc 1.1 needs", () => {
    const userns = { path: "/state/ns/pod1/user", uids: { containerId: 0, hostId: 100000, length: 65536 }, gids: { containerId: 0, hostId: 200000, length: 65536 } };
    const { spec } = buildSpec(input({}, { sandbox: sandbox({ userns }) }));
    assert.deepEqual(spec.linux.namespaces.filter((n) => n.type === "user"), [{ type: "user", path: "/state/ns/pod1/user" }]);
    assert.deepEqual(spec.linux.uidMappings, [{ containerID: 0, hostID: 100000, size: 65536 }]);
    assert.deepEqual(spec.linux.gidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }]);
    const plain = buildSpec(input({})).spec;
    assert.equal(plain.linux.namespaces.some((n) => n.type === "user"), false);
    assert.equal(plain.linux.uidMappings, undefined);
  });
});
