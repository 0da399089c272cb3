// The signal StopContainer sends first (KEP-4960): ContainerConfig.stop_signal, else the
// image's StopSignal, else SIGTERM; and the same signal as the CRI's Signal enum for
// ContainerStatus.stop_signal. Pure.
import { constants } from "node:os";
import { Signal, signalFromJSON, signalToJSON } from "../gen/api.js";

// glibc's SIGRTMIN is 34 (the kernel's first two are its own), SIGRTMAX 64: what runc parses too.
const RTMIN = 34;
const RTMAX = 64;

function rtNumber(name: string): number | undefined {
  // The enum spells them SIGRTMINPLUS3, images (as docker does) SIGRTMIN+3.
  const rt = /^SIGRT(MIN|MAX)(?:(PLUS|MINUS|\+|-)(\d+))?$/.exec(name);
  if (!rt) return undefined;
  const n = Number(rt[3] ?? 0) * (rt[2] === "MINUS" || rt[2] === "-" ? -1 : 1);
  return (rt[1] === "MIN" ? RTMIN : RTMAX) + n;
}

/** The signal runc kill gets first, as runc spells it (real-time signals as numbers). */
export function stopSignalName(configSignal: Signal, imageSignal: string | undefined): string {
  if (configSignal !== Signal.RUNTIME_DEFAULT && configSignal !== Signal.UNRECOGNIZED) {
    const name = signalToJSON(configSignal);
    const rt = rtNumber(name);
    return rt === undefined ? name : String(rt);
  }
  const s = (imageSignal ?? "").trim().toUpperCase();
  if (s === "") return "SIGTERM";
  if (/^\d+$/.test(s)) return s;
  const name = s.startsWith("SIG") ? s : `SIG${s}`;
  const rt = rtNumber(name);
  return rt === undefined ? name : String(rt);
}

const BY_NUMBER = new Map<number, Signal>();
for (let n = RTMIN; n <= RTMAX; n++) {
  const name = n === RTMIN ? "SIGRTMIN" : n === RTMAX ? "SIGRTMAX" : n - RTMIN <= 15 ? `SIGRTMINPLUS${n - RTMIN}` : `SIGRTMAXMINUS${RTMAX - n}`;
  BY_NUMBER.set(n, signalFromJSON(name));
}
// The first name per number in enum order (SIGABRT before SIGIOT, SIGCHLD before SIGCLD, SIGIO before SIGPOLL).
for (const [name, n] of Object.entries(constants.signals as Record<string, number>)) {
  const sig = signalFromJSON(name);
  if (sig === Signal.UNRECOGNIZED) continue;
  const had = BY_NUMBER.get(n);
  if (had === undefined || sig < had) BY_NUMBER.set(n, sig);
}

/** The stop signal (a name or number, as stopSignalName gives it) as the CRI enum; RUNTIME_DEFAULT when it has no name there. */
export function stopSignalEnum(signal: string): Signal {
  if (/^\d+$/.test(signal)) return BY_NUMBER.get(Number(signal)) ?? Signal.RUNTIME_DEFAULT;
  const sig = signalFromJSON(signal);
  return sig === Signal.UNRECOGNIZED ? Signal.RUNTIME_DEFAULT : sig;
}
