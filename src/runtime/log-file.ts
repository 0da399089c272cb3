// The container's CRI log file under the pod's log directory. conmon opens the path it is given
// (and `<path>.tmp` on a reopen, with O_TRUNC) following symlinks, so berth creates those files
// itself first, refusing a symlink or a non-regular file at any step below the log directory: a
// link planted there (by a container with that directory mounted) must not aim conmon at /etc.
import { constants } from "node:fs";
import { lstat, mkdir, open, unlink } from "node:fs/promises";
import path from "node:path";
import { InvalidArgument, isErrno } from "../errors.js";

/** The components of a log_path relative to the pod's log directory; refuses absolute paths and "..". */
export function logPathParts(logPath: string): string[] {
  if (logPath.length > 4096 || /[\x00-\x1f\x7f]/.test(logPath)) throw new InvalidArgument(`log_path ${JSON.stringify(logPath.slice(0, 200))} must be at most 4096 characters without control characters`);
  const parts = logPath.split("/").filter((p) => p !== "" && p !== ".");
  if (path.isAbsolute(logPath) || parts.includes("..") || parts.length === 0) {
    throw new InvalidArgument(`log_path "${logPath.slice(0, 300)}" must be relative to the pod's log_directory, without ".."`);
  }
  return parts;
}

function refused(logDir: string, rel: string, why: string): InvalidArgument {
  return new InvalidArgument(`log_path "${rel}" under ${logDir}: ${why}; berth does not follow links in the log directory`);
}

/** Creates the folders below logDir (never through a symlink); returns the file's absolute path. */
async function prepareParents(logDir: string, parts: string[]): Promise<string> {
  // The log directory itself comes from kubelet, which normally creates it; below it nothing is trusted.
  await mkdir(logDir, { recursive: true, mode: 0o755 });
  let cur = logDir;
  for (const p of parts.slice(0, -1)) {
    cur = path.join(cur, p);
    let st = await lstat(cur).catch((err) => (isErrno(err, "ENOENT") ? undefined : Promise.reject(err)));
    if (!st) {
      await mkdir(cur, { mode: 0o755 }).catch((err) => (isErrno(err, "EEXIST") ? undefined : Promise.reject(err)));
      st = await lstat(cur);
    }
    if (!st.isDirectory()) throw refused(logDir, parts.join("/"), `${cur} is ${st.isSymbolicLink() ? "a symlink" : "not a directory"}`);
  }
  return path.join(cur, parts[parts.length - 1]!);
}

/** Opens (creating) a regular file without following a final symlink; refuses FIFOs and devices. */
async function createRegular(file: string, logDir: string, rel: string, truncate: boolean): Promise<void> {
  let fh;
  try {
    fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK | (truncate ? constants.O_TRUNC : 0), 0o640);
  } catch (err) {
    if (isErrno(err, "ELOOP")) throw refused(logDir, rel, `${file} is a symlink`);
    if (isErrno(err, "ENXIO") || isErrno(err, "EISDIR")) throw refused(logDir, rel, `${file} is not a regular file`);
    throw err;
  }
  try {
    if (!(await fh.stat()).isFile()) throw refused(logDir, rel, `${file} is not a regular file`);
  } finally {
    await fh.close();
  }
}

/** Creates the container's log file (and its folders) under logDir for conmon; returns its path. */
export async function prepareLogFile(logDir: string, logPath: string): Promise<string> {
  const parts = logPathParts(logPath);
  const file = await prepareParents(logDir, parts);
  await createRegular(file, logDir, logPath, false);
  return file;
}

/**
 * Before conmon reopens a log (it writes `<file>.tmp` with O_TRUNC, then renames it over the
 * file): the folders are checked again and `<file>.tmp` is made a fresh regular file, never a link.
 */
export async function prepareLogReopen(logDir: string, logPath: string): Promise<void> {
  const parts = logPathParts(logPath);
  const file = await prepareParents(logDir, parts);
  const tmp = `${file}.tmp`;
  const st = await lstat(tmp).catch(() => undefined);
  // unlink does not follow a symlink: whatever was planted is removed, its target untouched.
  if (st && !st.isFile()) await unlink(tmp);
  await createRegular(tmp, logDir, `${logPath}.tmp`, true);
}
