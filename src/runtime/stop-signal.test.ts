// The stop signal: config over image over SIGTERM, and back to the CRI enum for ContainerStatus.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Signal } from "../gen/api.js";
import { stopSignalEnum, stopSignalName } from "./stop-signal.js";

test("the config's signal wins over the image's, SIGTERM when neither names one", () => {
  const cases: Array<[Signal, string | undefined, string]> = [
    [Signal.RUNTIME_DEFAULT, undefined, "SIGTERM"],
    [Signal.RUNTIME_DEFAULT, "", "SIGTERM"],
    [Signal.RUNTIME_DEFAULT, "sigquit", "SIGQUIT"],
    [Signal.RUNTIME_DEFAULT, "USR1", "SIGUSR1"],
    [Signal.RUNTIME_DEFAULT, "9", "9"],
    [Signal.RUNTIME_DEFAULT, "SIGRTMIN+3", "37"],
    [Signal.RUNTIME_DEFAULT, "RTMAX-2", "62"],
    [Signal.RUNTIME_DEFAULT, "SIGRTMAX", "64"],
    [Signal.SIGUSR2, "SIGQUIT", "SIGUSR2"],
    [Signal.SIGRTMIN, undefined, "34"],
    [Signal.SIGRTMINPLUS15, undefined, "49"],
    [Signal.SIGRTMAXMINUS14, undefined, "50"],
    [Signal.SIGRTMAX, undefined, "64"],
    [Signal.UNRECOGNIZED, "SIGINT", "SIGINT"],
  ];
  for (const [config, image, want] of cases) assert.equal(stopSignalName(config, image), want, `${config} ${image}`);
});

test("the signal used, as the CRI enum", () => {
  assert.equal(stopSignalEnum("SIGTERM"), Signal.SIGTERM);
  assert.equal(stopSignalEnum("SIGUSR1"), Signal.SIGUSR1);
  assert.equal(stopSignalEnum("9"), Signal.SIGKILL);
  assert.equal(stopSignalEnum("15"), Signal.SIGTERM);
  assert.equal(stopSignalEnum("6"), Signal.SIGABRT);
  assert.equal(stopSignalEnum("34"), Signal.SIGRTMIN);
  assert.equal(stopSignalEnum("49"), Signal.SIGRTMINPLUS15);
  assert.equal(stopSignalEnum("50"), Signal.SIGRTMAXMINUS14);
  assert.equal(stopSignalEnum("64"), Signal.SIGRTMAX);
  assert.equal(stopSignalEnum("37"), Signal.SIGRTMINPLUS3);
  assert.equal(stopSignalEnum("62"), Signal.SIGRTMAXMINUS2);
  assert.equal(stopSignalEnum("99"), Signal.RUNTIME_DEFAULT);
  assert.equal(stopSignalEnum("SIGNOPE"), Signal.RUNTIME_DEFAULT);
  // Round trip for every named signal.
  for (let s = Signal.SIGABRT; s <= Signal.SIGRTMAX; s++) {
    const back = stopSignalEnum(stopSignalName(s, undefined));
    assert.ok(back === s || stopSignalName(back, undefined) === stopSignalName(s, undefined), `signal ${s}`);
  }
});
