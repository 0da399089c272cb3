// The container store: every container record in memory (kept in the crash-safe record store
// on disk), the names they reserve, look-up by id or unique id prefix, and a pod's containers.
// It decides nothing about a container's lifecycle; the lifecycle code (container.ts) and the
// pod layer read and change it.
import { AlreadyExists, InvalidArgument, NotFound } from "../errors.js";
import type { Logger } from "../log.js";
import { RecordStore } from "../store/records.js";
import type { ContainerRecord } from "./container-record.js";

type Kind = ContainerRecord["kind"];

const NONE: readonly ContainerRecord[] = Object.freeze([]);

export class ContainerStore {
  private readonly records = new Map<string, ContainerRecord>();
  /** Reserved names to the id holding them (reserved before the record exists). */
  private readonly names = new Map<string, string>();
  private readonly disk: RecordStore<ContainerRecord>;
  /** The CRI containers, all and by pod, and each pod's infra container, built once per change of the record set (kubelet lists them every second). */
  private lists: { containers: readonly ContainerRecord[]; byPod: Map<string, readonly ContainerRecord[]>; infra: Map<string, ContainerRecord> } | undefined;

  constructor(dir: string) {
    this.disk = new RecordStore<ContainerRecord>(dir);
  }

  /** Reads every record from disk (corrupt ones quarantined, logged); returns them for recovery to check. */
  async load(log: Logger): Promise<ContainerRecord[]> {
    const { records, problems } = await this.disk.loadAll();
    for (const p of problems) log.error(p, "container record quarantined");
    for (const [id, r] of records) {
      if (r.id !== id) {
        log.error({ file: id }, "container record names another id; ignored");
        continue;
      }
      this.records.set(id, r);
      this.names.set(r.name, id);
    }
    this.lists = undefined;
    return [...this.records.values()];
  }

  /** Holds `name` for `id`; AlreadyExists names the holder. */
  reserve(name: string, id: string, taken: (holder: string) => string): void {
    const holder = this.names.get(name);
    if (holder) throw new AlreadyExists(taken(holder));
    this.names.set(name, id);
  }

  /** Frees a name (only while `id` holds it). */
  release(name: string, id: string): void {
    if (this.names.get(name) === id) this.names.delete(name);
  }

  /** Puts a new record in memory (its name is reserved already). */
  add(r: ContainerRecord): void {
    this.records.set(r.id, r);
    this.lists = undefined;
  }

  /** True while `r` is the store's record for its id (not removed meanwhile). */
  holds(r: ContainerRecord): boolean {
    return this.records.get(r.id) === r;
  }

  has(id: string): boolean {
    return this.records.has(id);
  }

  /** Writes a record to disk. */
  save(r: ContainerRecord): Promise<void> {
    return this.disk.put(r.id, r);
  }

  /** Deletes a record's file (memory keeps it until forget: a crash in between leaves no record on disk). */
  async deleteFile(id: string): Promise<void> {
    await this.disk.delete(id);
  }

  /** Drops a record from memory and frees its name. */
  forget(r: ContainerRecord): void {
    this.records.delete(r.id);
    this.lists = undefined;
    this.release(r.name, r.id);
  }

  /** The record of a full id or unique prefix, among `kinds`. */
  find(idOrPrefix: string, kinds: Kind[] = ["container"]): ContainerRecord {
    if (!idOrPrefix) throw new InvalidArgument("container id is empty");
    const exact = this.records.get(idOrPrefix);
    if (exact && kinds.includes(exact.kind)) return exact;
    const matches = [...this.records.values()].filter((r) => kinds.includes(r.kind) && r.id.startsWith(idOrPrefix));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new InvalidArgument(`container id prefix "${idOrPrefix}" is ambiguous (${matches.length} containers)`);
    throw new NotFound(`container "${idOrPrefix}" not found`);
  }

  /** find, with an unknown id answered undefined (an ambiguous prefix still throws). */
  findOrUndefined(idOrPrefix: string, kinds: Kind[] = ["container"]): ContainerRecord | undefined {
    try {
      return this.find(idOrPrefix, kinds);
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
  }

  /** The record of exactly `id`, of any kind. */
  get(id: string): ContainerRecord | undefined {
    return this.records.get(id);
  }

  /** Every record, infra containers included. */
  all(): ContainerRecord[] {
    return [...this.records.values()];
  }

  /** Every CRI container (not infra). The same array until a record is added or forgotten. */
  containers(): readonly ContainerRecord[] {
    return this.cached().containers;
  }

  /** A pod's CRI containers (not its infra container). The same array until a record is added or forgotten. */
  containersOf(sandboxId: string): readonly ContainerRecord[] {
    return this.cached().byPod.get(sandboxId) ?? NONE;
  }

  private cached(): NonNullable<ContainerStore["lists"]> {
    if (!this.lists) {
      const containers: ContainerRecord[] = [];
      const byPod = new Map<string, ContainerRecord[]>();
      const infra = new Map<string, ContainerRecord>();
      for (const r of this.records.values()) {
        if (r.kind === "infra") {
          if (!infra.has(r.sandboxId)) infra.set(r.sandboxId, r);
          continue;
        }
        containers.push(r);
        const mine = byPod.get(r.sandboxId);
        if (mine) mine.push(r);
        else byPod.set(r.sandboxId, [r]);
      }
      this.lists = { containers, byPod, infra };
    }
    return this.lists;
  }

  /** A pod's infra container, if it has one. */
  infraOf(sandboxId: string): ContainerRecord | undefined {
    return this.cached().infra.get(sandboxId);
  }

  get size(): number {
    return this.records.size;
  }
}
