// berth_native: the system and libc calls berthd needs that Node has no API for. This file
// registers the exports; each lives in the native_*.c file of its concern (native.h lists them).
//   openPty()                 -> [masterFd, slaveFd]   a pseudo-terminal pair for `runc exec` with a tty
//   setWindowSize(fd, r, c)   -> undefined             TIOCSWINSZ on a pty
//   makeRaw(fd)               -> undefined             raw mode (cfmakeraw) on a pty
//   connectSeqpacket(path)    -> fd                    connect to a SOCK_SEQPACKET unix socket (conmon's attach socket)
//   connectInNetns(netns, port, ipv6, cb(err, fd))     a TCP connection to localhost:port inside a network namespace
//   trimMalloc()              -> boolean               malloc_trim(0): hand malloc's free pages back to the kernel
//   mountFs(source, target, fstype, flags, data, cwd, cb(err))   mount(2), relative paths in data resolved from cwd
//   unmountFs(target, lazy, cb(err))                   umount2(2) with UMOUNT_NOFOLLOW (and MNT_DETACH when lazy)
//   makeNode(path, mode, major, minor, cb(err))        mknod(2) of a device node or fifo, then exactly mode's permission bits
//   setXattr(path, name, value, cb(err))               lsetxattr(2) (never a symlink's target)
//   pinNamespaces(netFile, ipcFile, utsFile, hostname, cb(err))  new namespaces, each bind-mounted on its file
//   pinUserNamespace(userFile, uidMap, gidMap, netFile, ipcFile, utsFile, hostname, cb(err))
//                                                      a new user namespace (maps written) owning the new others, all pinned
//   idmapMount(source, target, usernsFile, replace, cb(err))  an idmapped clone of source's mount tree attached at target
//   procStartTime(pid)        -> string | null         field 22 of /proc/PID/stat (null: no such process)
//   signalProcess(pid, startTime, signal) -> boolean   pidfd_send_signal to PID if it is still the process started then
//   makePipe()                -> [readFd, writeFd]     a close-on-exec pipe
//   spawnProcess(file, args, env, cwd, setsid, stdio, onExit(code, signal)) -> [pid, pidfd]
//                                                      posix_spawn (vfork-style); a thread reaps it and calls onExit
//   pidfdSignal(pidfd, signal) -> boolean              pidfd_send_signal; false once the process is gone
//   watchExit(pid, onExit())  -> id | null             calls onExit once pid has exited (a pidfd on the event loop); null: no such process
//   cancelExitWatch(id)       -> boolean               stops a watch; false when it had fired or was cancelled
//   sendDatagram(path, message) -> undefined           one SOCK_DGRAM message to a unix socket ("@name": abstract)
//   bindDatagram(path)        -> fd                    a non-blocking SOCK_DGRAM socket bound at path (tests' NOTIFY_SOCKET)
//   recvDatagram(fd)          -> string | null         the next message, null when none is waiting
//   countFds(pids, cb(err, counts))                    counts[2i], counts[2i+1]: open fds and sockets of pids[i]
// Every fd is created close-on-exec; the caller owns and closes it.
#include "native.h"

// Not inline: the message is cut at 255 bytes on purpose (a long path), which the compiler
// would flag wherever it could see the path's buffer size.
napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  const char *name = err == ENOENT ? "ENOENT" : err == ECONNREFUSED ? "ECONNREFUSED" : err == EACCES ? "EACCES" : "ESYSCALL";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, message, &error);
  napi_value errnum;
  napi_create_int32(env, err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
  return NULL;
}

// One exported function: its JS name and its C implementation.
#define EXPORT(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      // native_pty.c
      EXPORT("openPty", open_pty),
      EXPORT("setWindowSize", set_window_size),
      EXPORT("makeRaw", make_raw),
      // native_net.c
      EXPORT("connectSeqpacket", connect_seqpacket),
      EXPORT("connectInNetns", connect_in_netns),
      EXPORT("sendDatagram", send_datagram),
      EXPORT("bindDatagram", bind_datagram),
      EXPORT("recvDatagram", recv_datagram),
      // native_mount.c
      EXPORT("mountFs", mount_fs),
      EXPORT("unmountFs", unmount_fs),
      EXPORT("makeNode", make_node),
      EXPORT("setXattr", set_xattr),
      EXPORT("pinNamespaces", pin_namespaces),
      EXPORT("pinUserNamespace", pin_user_namespace),
      EXPORT("idmapMount", idmap_mount_js),
      // native_spawn.c
      EXPORT("procStartTime", proc_start_time),
      EXPORT("signalProcess", signal_process),
      EXPORT("makePipe", make_pipe),
      EXPORT("spawnProcess", spawn_process),
      EXPORT("pidfdSignal", pidfd_signal),
      // native_watch.c
      EXPORT("watchExit", watch_exit),
      EXPORT("cancelExitWatch", cancel_exit_watch),
      // native_mem.c
      EXPORT("trimMalloc", trim_malloc),
      // native_read.c
      EXPORT("countFds", count_fds),
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
