// The pod network: attaching a pod's network namespace to the configured CNI network (and
// to loopback), detaching it, checking it. The result of every ADD is cached per
// attachment under <root>/cni/results, so DEL and CHECK get the config and result the
// ADD used even when the conf dir changed since.
import { mkdir, readdir, readFile, unlink } from "node:fs/promises";
import path from "node:path";
import { FailedPrecondition, isErrno, wrap } from "../errors.js";
import { cniResultsOf } from "../layout.js";
import type { Logger } from "../log.js";
import { faultPoint } from "../faults.js";
import { decodeRecord, encodeRecord, writeFileAtomic } from "../store/records.js";
import { formatCniArgs, pluginInput, SUPPORTED_VERSIONS, versionAtLeast, type CapabilityArgs, type NetworkConfList, type PluginConf } from "./config.js";
import { invokePlugin, type CniCommand } from "./invoke.js";
import type { CniConfWatcher, NetworkCondition } from "./watcher.js";

/** One pod's attachment: which namespace, and who it belongs to (for CNI_ARGS). */
export interface Attachment {
  /** The sandbox id (CNI_CONTAINERID). */
  containerId: string;
  netns: string;
  podName: string;
  podNamespace: string;
  podUid: string;
}

export interface AttachResult {
  network: string;
  /** The last plugin's result (the CNI result of the attachment). */
  result: unknown;
}

/** What the sandbox layer asks of the pod network. */
export interface PodNetwork {
  setUp(att: Attachment, caps: CapabilityArgs): Promise<AttachResult>;
  /** Idempotent: detaching an attachment that is gone (or never was) succeeds. */
  tearDown(att: Attachment): Promise<void>;
  check(att: Attachment): Promise<void>;
  condition(): Promise<NetworkCondition>;
  /** True while an ADD's result is cached for this attachment: a completed DEL removes it. */
  hasAttachment(containerId: string): Promise<boolean>;
  /** Every attachment with a cached result (for recovery: attachments whose pod is gone); `foreign` lists files that are not berth's. */
  cachedAttachments(): Promise<{ attachments: Array<{ containerId: string; result: unknown }>; foreign: string[] }>;
}

type ListConf = Pick<NetworkConfList, "cniVersion" | "name" | "plugins" | "disableCheck">;

interface CacheEntry {
  kind: "berth-cni-cache-v1";
  containerId: string;
  ifName: string;
  config: ListConf;
  caps: CapabilityArgs;
  result: unknown;
}

const IFNAME = "eth0";
// Every pod gets its loopback up, whatever the configured chain holds (as containerd does).
const LOOPBACK: ListConf = { cniVersion: "0.3.1", name: "cni-loopback", plugins: [{ type: "loopback" }] };

export class CniNetwork implements PodNetwork {
  private readonly cacheDir: string;

  constructor(
    private readonly conf: CniConfWatcher,
    root: string,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {
    this.cacheDir = cniResultsOf(root);
  }

  async init(): Promise<void> {
    await mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
  }

  condition(): Promise<NetworkCondition> {
    return this.conf.condition();
  }

  private cacheFile(containerId: string, ifName: string): string {
    if (!/^[A-Za-z0-9_.-]+$/.test(containerId)) throw new Error(`invalid attachment id "${containerId}"`);
    return path.join(this.cacheDir, `${containerId}-${ifName}.json`);
  }

  private async readCache(containerId: string): Promise<CacheEntry | undefined> {
    try {
      return decodeRecord<CacheEntry>(await readFile(this.cacheFile(containerId, IFNAME), "utf8"));
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      this.log.warn({ containerId, err: String(err) }, "unreadable CNI result cache entry; using the current config");
      return undefined;
    }
  }

  private async requireConfig(): Promise<NetworkConfList> {
    const loaded = await this.conf.current();
    if (loaded.error) throw new FailedPrecondition(`network plugin not ready: ${loaded.error}`);
    if (!loaded.config) {
      throw new FailedPrecondition(`network plugin not ready: no CNI network config in ${this.conf.confDir}${loaded.skipped.length ? ` (skipped: ${loaded.skipped.join("; ")})` : ""}`);
    }
    if (!SUPPORTED_VERSIONS.includes(loaded.config.cniVersion)) {
      throw new FailedPrecondition(`CNI network "${loaded.config.name}" (${loaded.config.file}) has cniVersion ${loaded.config.cniVersion}; berth supports ${SUPPORTED_VERSIONS.join(", ")}`);
    }
    return loaded.config;
  }

  private cniArgs(att: Attachment): string {
    return formatCniArgs([
      ["IgnoreUnknown", "1"],
      ["K8S_POD_NAMESPACE", att.podNamespace],
      ["K8S_POD_NAME", att.podName],
      ["K8S_POD_INFRA_CONTAINER_ID", att.containerId],
      ["K8S_POD_UID", att.podUid],
    ]);
  }

  private call(command: CniCommand, list: ListConf, plugin: PluginConf, att: Attachment, ifName: string, prev: unknown, caps: CapabilityArgs): Promise<unknown> {
    return invokePlugin({
      command,
      type: plugin.type,
      containerId: att.containerId,
      netns: att.netns,
      ifName,
      cniArgs: this.cniArgs(att),
      binDirs: this.conf.binDirs,
      input: pluginInput(list, plugin, prev, caps),
      timeoutMs: this.timeoutMs,
    });
  }

  private async addList(list: ListConf, att: Attachment, ifName: string, caps: CapabilityArgs): Promise<unknown> {
    let prev: unknown;
    for (const plugin of list.plugins) {
      // Before 0.3.0 there is no chaining: each plugin sees only its own config.
      prev = await this.call("ADD", list, plugin, att, ifName, versionAtLeast(list.cniVersion, "0.3.0") ? prev : undefined, caps);
    }
    return prev;
  }

  /** DEL through the whole chain in reverse; every plugin is asked even when one fails. */
  private async delList(list: ListConf, att: Attachment, ifName: string, caps: CapabilityArgs, result: unknown): Promise<void> {
    const prev = versionAtLeast(list.cniVersion, "0.4.0") ? result ?? undefined : undefined;
    const errors: string[] = [];
    for (const plugin of [...list.plugins].reverse()) {
      try {
        await this.call("DEL", list, plugin, att, ifName, prev, caps);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    if (errors.length) throw new Error(`CNI network "${list.name}" DEL: ${errors.join("; ")}`);
  }

  async setUp(att: Attachment, caps: CapabilityArgs): Promise<AttachResult> {
    const config = await this.requireConfig();
    const list: ListConf = { cniVersion: config.cniVersion, name: config.name, plugins: config.plugins, disableCheck: config.disableCheck };
    // Loopback and the configured chain touch different interfaces: attached side by side.
    const [lo, chain] = await Promise.allSettled([this.addList(LOOPBACK, att, "lo", {}), this.addList(list, att, IFNAME, caps)]);
    if (lo.status === "rejected" || chain.status === "rejected") {
      // Undo what the chain did (all or part of it), with exactly the config it saw.
      await this.delList(list, att, IFNAME, caps, chain.status === "fulfilled" ? chain.value : undefined).catch((delErr) =>
        this.log.warn({ containerId: att.containerId, err: String(delErr) }, "CNI DEL after a failed ADD failed"),
      );
      if (lo.status === "rejected") throw wrap("attach loopback", lo.reason);
      throw wrap(`attach to CNI network "${list.name}" (${config.file})`, (chain as PromiseRejectedResult).reason);
    }
    const result = chain.value;
    await faultPoint("RunPodSandbox.after-cni-add");
    const entry: CacheEntry = { kind: "berth-cni-cache-v1", containerId: att.containerId, ifName: IFNAME, config: list, caps, result };
    try {
      await writeFileAtomic(this.cacheFile(att.containerId, IFNAME), encodeRecord(entry));
    } catch (err) {
      await this.delList(list, att, IFNAME, caps, result).catch(() => undefined);
      throw wrap("cache CNI result", err);
    }
    return { network: list.name, result };
  }

  async tearDown(att: Attachment): Promise<void> {
    const cached = await this.readCache(att.containerId);
    let list: ListConf;
    let caps: CapabilityArgs = {};
    let result: unknown;
    if (cached) {
      ({ config: list, caps, result } = cached);
    } else {
      const loaded = await this.conf.current();
      // Nothing was attached through a config berth still knows; nothing to detach.
      if (!loaded.config) return;
      list = loaded.config;
    }
    await this.delList(list, att, IFNAME, caps, result);
    await unlink(this.cacheFile(att.containerId, IFNAME)).catch((err) => {
      if (!isErrno(err, "ENOENT")) throw err;
    });
  }

  async hasAttachment(containerId: string): Promise<boolean> {
    return readFile(this.cacheFile(containerId, IFNAME)).then(() => true, (err) => {
      if (isErrno(err, "ENOENT")) return false;
      throw err;
    });
  }

  async cachedAttachments(): Promise<{ attachments: Array<{ containerId: string; result: unknown }>; foreign: string[] }> {
    const attachments: Array<{ containerId: string; result: unknown }> = [];
    const foreign: string[] = [];
    const suffix = `-${IFNAME}.json`;
    for (const name of (await readdir(this.cacheDir).catch(() => [] as string[])).sort()) {
      const file = path.join(this.cacheDir, name);
      if (name.startsWith(".tmp-")) {
        // A cache write a crash cut short (writeFileAtomic's temp file).
        await unlink(file).catch(() => undefined);
        continue;
      }
      const containerId = name.endsWith(suffix) ? name.slice(0, -suffix.length) : "";
      if (!/^[A-Za-z0-9_.-]+$/.test(containerId)) {
        foreign.push(file);
        continue;
      }
      const cached = await this.readCache(containerId);
      attachments.push({ containerId, result: cached?.result });
    }
    return { attachments, foreign };
  }

  async check(att: Attachment): Promise<void> {
    const cached = await this.readCache(att.containerId);
    if (!cached) throw new FailedPrecondition(`no CNI result cached for ${att.containerId}: the pod is not attached`);
    const { config: list, caps, result } = cached;
    if (!versionAtLeast(list.cniVersion, "0.4.0") || list.disableCheck) return;
    for (const plugin of list.plugins) await this.call("CHECK", list, plugin, att, IFNAME, result, caps);
  }
}
