// The gRPC status codes (grpc/doc/statuscodes.md), as numbers and as their names, for the
// daemon-side code: berthd answers gRPC itself (server.ts) and needs no grpc-js for these.
export const status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type StatusCode = (typeof status)[keyof typeof status];

const NAMES: readonly string[] = Object.keys(status);

/** The code's name ("NOT_FOUND"), or the number itself for a code outside the table. */
export function statusName(code: number): string {
  return NAMES[code] ?? String(code);
}
