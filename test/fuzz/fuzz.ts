// `make fuzz`: random and malformed CRI requests against a real berthd, a bounded number of
// cases. Passes when berthd never crashes or hangs, every answer is a gRPC status (never a
// transport failure), and nothing is left behind once the objects the fuzzer happened to
// create are removed through the CRI.
import { credentials, Metadata, makeGenericClientConstructor, status, type ServiceError } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import path from "node:path";
import { REPO, startBerthd, removeAllPods } from "../harness/berthd.js";
import { hostLeaks } from "../harness/leaks.js";
import { forceRemoveDir, ownLeaks, strayFiles } from "../recovery-check.js";

const CASES = Number(process.env.FUZZ_CASES ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const CALL_TIMEOUT_MS = 30_000;

let state = SEED >>> 0 || 1;
function rand(): number {
  // xorshift32: reproducible from FUZZ_SEED
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 0x100000000;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

const STRINGS = ["", "a", "busybox", "../../../../etc/passwd", "/etc/shadow", "x\ny", "a=b", "nul\u0000byte", "☃", "K".repeat(70_000),
  "registry.k8s.io/pause:3.10", "sha256:" + "0".repeat(64), "UPPER_case", "-leading", "ns/name", "..", ".", "/", "unix:///tmp/x"];

function randomValue(field: protobuf.Field, depth: number): unknown {
  field.resolve();
  if (field.resolvedType instanceof protobuf.Enum) {
    const values = Object.values(field.resolvedType.values);
    return rand() < 0.8 ? pick(values) : Math.floor(rand() * 1000) - 500;
  }
  if (field.resolvedType instanceof protobuf.Type) return depth > 4 ? {} : randomMessage(field.resolvedType, depth + 1);
  switch (field.type) {
    case "string": return pick(STRINGS);
    case "bytes": return Buffer.from(pick(STRINGS));
    case "bool": return rand() < 0.5;
    case "int32": case "sint32": case "sfixed32": return pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 100]);
    case "uint32": case "fixed32": return pick([0, 1, 2 ** 32 - 1, 100]);
    case "int64": case "sint64": case "sfixed64": return pick(["0", "1", "-1", "9223372036854775807", "-9223372036854775808", "1000000"]);
    case "uint64": case "fixed64": return pick(["0", "1", "18446744073709551615", "1000000"]);
    case "double": case "float": return pick([0, -1, 1.5, 1e308, Number.NaN]);
    default: return undefined;
  }
}

function randomMessage(type: protobuf.Type, depth = 0): Record<string, unknown> {
  const msg: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    if (rand() < 0.35) continue;
    if (field.map) {
      const m: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 3); i > 0; i--) m[pick(STRINGS).slice(0, 200) || "k"] = randomValue(field, depth);
      msg[field.name] = m;
    } else if (field.repeated) {
      msg[field.name] = Array.from({ length: Math.floor(rand() * 3) }, () => randomValue(field, depth));
    } else {
      msg[field.name] = randomValue(field, depth);
    }
  }
  return msg;
}

async function main(): Promise<void> {
  const root = await protobuf.load(path.join(REPO, "proto/api.proto"));
  const services = ["runtime.v1.RuntimeService", "runtime.v1.ImageService"].map((n) => root.lookupService(n));
  const before = await hostLeaks();
  const d = await startBerthd();
  const clients = services.map((svc) => {
    const def: Record<string, unknown> = {};
    for (const m of svc.methodsArray) {
      if (m.responseStream) continue;
      def[m.name] = {
        path: `/${svc.fullName.slice(1)}/${m.name}`,
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      };
    }
    const Ctor = makeGenericClientConstructor(def as never, svc.name);
    return { svc, client: new Ctor(`unix://${d.socket}`, credentials.createInsecure()) as unknown as Record<string, Function> };
  });
  const codes = new Map<string, number>();
  let transportFailures = 0;
  console.log(`fuzz: seed ${SEED}, ${CASES} cases against ${d.socket}`);
  try {
    for (let i = 0; i < CASES; i++) {
      const { svc, client } = pick(clients);
      const method = pick(svc.methodsArray.filter((m) => !m.responseStream));
      method.resolve();
      const reqType = method.resolvedRequestType!;
      let payload: Buffer;
      const mode = rand();
      if (method.name === "RunPodSandbox" && mode < 0.5) {
        // Random fields around a valid, host-network pod: such requests get past the first checks into the host steps.
        const req = randomMessage(reqType);
        const config = (req.config ?? {}) as Record<string, unknown>;
        config.metadata = { name: `fuzz-${i}`, namespace: "fuzz", uid: `u${i}`, attempt: 0 };
        config.linux = { ...((config.linux as object | undefined) ?? {}), securityContext: { namespaceOptions: { network: 2, pid: 1, ipc: rand() < 0.5 ? 0 : 2 } } };
        req.config = config;
        payload = Buffer.from(reqType.encode(reqType.fromObject(req)).finish());
      } else if (mode < 0.7) payload = Buffer.from(reqType.encode(reqType.fromObject(randomMessage(reqType))).finish());
      else if (mode < 0.85) payload = Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
      else {
        const good = Buffer.from(reqType.encode(reqType.fromObject(randomMessage(reqType))).finish());
        payload = good.subarray(0, Math.floor(rand() * good.length));
      }
      let details = "";
      const code = await new Promise<number>((resolve) => {
        client[method.name]!.call(client, payload, new Metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err: ServiceError | null) => {
          details = err?.details ?? "";
          resolve(err ? err.code : status.OK);
        });
      });
      const key = `${method.name}:${status[code]}`;
      codes.set(key, (codes.get(key) ?? 0) + 1);
      // berth's own UNAVAILABLE for a registry it cannot reach (PullImage of a random name) is an answer, not a transport failure.
      const registryDown = code === status.UNAVAILABLE && /^(cannot reach|cannot resolve the registry host|mirrors failed)/.test(details);
      if ((code === status.UNAVAILABLE && !registryDown) || code === status.DEADLINE_EXCEEDED) {
        transportFailures++;
        console.error(`case ${i}: ${method.name} -> ${status[code]}`);
      }
      if (i % 200 === 199) {
        await d.cri.runtime.version({}, { timeoutMs: 5000 });
        process.stdout.write(`  ${i + 1} cases, berthd alive\n`);
      }
    }
    // Remove whatever the random requests managed to create, through the CRI itself.
    const ctrs = await d.cri.runtime.listContainers({}).catch(() => ({ containers: [] }));
    for (const c of ctrs.containers) await d.cri.runtime.removeContainer({ containerId: c.id }).catch(() => undefined);
    await removeAllPods(d);
  } finally {
    for (const { client } of clients) (client as unknown as { close(): void }).close();
  }
  const exit = await d.stop();
  if (exit !== 0) console.error(`berthd exited with ${exit}:\n${d.logs().slice(-4000)}`);
  // Scoped to this berthd's dirs: other suites may run on the host at the same time.
  const leaks = [...ownLeaks(before, await hostLeaks(), d.dir), ...(await strayFiles(d, []))];
  await forceRemoveDir(d.dir);
  console.log("answers by method and code:");
  for (const [k, n] of [...codes.entries()].sort()) console.log(`  ${k} ${n}`);
  const crashed = d.proc.exitCode !== 0;
  const failed = (transportFailures > 0 ? 1 : 0) + (leaks.length ? 1 : 0) + (crashed ? 1 : 0);
  if (leaks.length) console.log(`leaks: ${leaks.join("; ")}`);
  console.log(`fuzz: ${CASES} cases, ${transportFailures} transport failures or hangs, ${leaks.length} leaks, berthd exit ${d.proc.exitCode}`);
  console.log(`${failed === 0 ? 1 : 0} passed, ${failed === 0 ? 0 : 1} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
