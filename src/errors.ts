// The small set of failures berth reports, each bound to one gRPC status code.
// Layers below src/cri throw these (or plain Errors, which become Internal);
// src/cri/rpc.ts turns them into the status a kubelet user reads.
import { status, statusName, type StatusCode } from "./grpc/status.js";

export class BerthError extends Error {
  readonly code: StatusCode;
  constructor(code: StatusCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgument extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.INVALID_ARGUMENT, message, options); }
}
export class NotFound extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.NOT_FOUND, message, options); }
}
export class AlreadyExists extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.ALREADY_EXISTS, message, options); }
}
export class FailedPrecondition extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.FAILED_PRECONDITION, message, options); }
}
export class DeadlineExceeded extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.DEADLINE_EXCEEDED, message, options); }
}
export class Unimplemented extends BerthError {
  constructor(message: string) { super(status.UNIMPLEMENTED, message); }
}
export class Unauthenticated extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.UNAUTHENTICATED, message, options); }
}
export class ResourceExhausted extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.RESOURCE_EXHAUSTED, message, options); }
}
export class Unavailable extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.UNAVAILABLE, message, options); }
}
export class Internal extends BerthError {
  constructor(message: string, options?: { cause?: unknown }) { super(status.INTERNAL, message, options); }
}

/** The message of err and of every cause below it, joined: "step: cause: cause". */
export function causeChain(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 10; depth++) {
    const msg = cur instanceof Error ? cur.message : String(cur);
    if (!parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join(": ");
}

/** Wraps err with the step that failed, keeping the gRPC code of a BerthError below. */
export function wrap(step: string, err: unknown): BerthError {
  const code = codeOf(err);
  return new BerthError(code, `${step}: ${causeChain(err)}`, { cause: err });
}

export function codeOf(err: unknown): StatusCode {
  let cur: unknown = err;
  for (let depth = 0; cur instanceof Error && depth < 10; depth++) {
    if (cur instanceof BerthError) return cur.code;
    // A full disk or quota is the node's state, not berth's bug, wherever it surfaced.
    if (isNoSpace(cur)) return status.RESOURCE_EXHAUSTED;
    cur = cur.cause;
  }
  return status.INTERNAL;
}

/** ENOSPC or EDQUOT: the filesystem (or the quota) is full. */
export function isNoSpace(err: unknown): boolean {
  return isErrno(err, "ENOSPC") || isErrno(err, "EDQUOT");
}

/** True when err or a cause below it is ENOSPC/EDQUOT. */
export function causedByNoSpace(err: unknown): boolean {
  let cur: unknown = err;
  for (let depth = 0; cur instanceof Error && depth < 10; depth++, cur = cur.cause) if (isNoSpace(cur)) return true;
  return false;
}

/** A write under `where` that ran out of space, as ResourceExhausted naming the path (node's errors name no path for write/fsync). */
export function noSpaceAt(step: string, where: string, err: unknown): ResourceExhausted {
  const code = (err as NodeJS.ErrnoException).code ?? "ENOSPC";
  return new ResourceExhausted(`${step}: no space left on the filesystem of ${where} (${code}); free space there and retry`, { cause: err });
}

/** The gRPC code's name ("NOT_FOUND"): a bounded label for failure counts. */
export function codeName(err: unknown): string {
  return statusName(codeOf(err));
}

/** True when err (or a cause) is a Node system error with this errno code. */
export function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}
