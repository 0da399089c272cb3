// berth_native: the system and libc calls berthd needs that Node has no API for.
//   openPty()                 -> [masterFd, slaveFd]   a pseudo-terminal pair for `runc exec` with a tty
//   setWindowSize(fd, r, c)   -> undefined             TIOCSWINSZ on a pty
//   makeRaw(fd)               -> undefined             raw mode (cfmakeraw) on a pty
//   connectSeqpacket(path)    -> fd                    connect to a SOCK_SEQPACKET unix socket (conmon's attach socket)
//   connectInNetns(netns, port, ipv6, cb(err, fd))     a TCP connection to localhost:port inside a network namespace
//   trimMalloc()              -> boolean               malloc_trim(0): hand malloc's free pages back to the kernel
//   mountFs(source, target, fstype, flags, data, cwd, cb(err))   mount(2), relative paths in data resolved from cwd
//   unmountFs(target, lazy, cb(err))                   umount2(2) with UMOUNT_NOFOLLOW (and MNT_DETACH when lazy)
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
//   sendDatagram(path, message) -> undefined           one SOCK_DGRAM message to a unix socket ("@name": abstract)
//   bindDatagram(path)        -> fd                    a non-blocking SOCK_DGRAM socket bound at path (tests' NOTIFY_SOCKET)
//   recvDatagram(fd)          -> string | null         the next message, null when none is waiting
//   readFiles(paths, maxBytes, cb(err, texts))         reads many small files (cgroup, /proc) on one pool thread;
//                                                      texts[i] is latin1 text or null (absent, unreadable)
//   countFds(pids, cb(err, counts))                    counts[2i], counts[2i+1]: open fds and sockets of pids[i]
// Every fd is created close-on-exec; the caller owns and closes it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <malloc.h>
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
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

// [a, b] as a JS array of two numbers.
static napi_value int_pair(napi_env env, int a, int b) {
  napi_value out, va, vb;
  napi_create_array_with_length(env, 2, &out);
  napi_create_int32(env, a, &va);
  napi_create_int32(env, b, &vb);
  napi_set_element(env, out, 0, va);
  napi_set_element(env, out, 1, vb);
  return out;
}

static napi_value open_pty(napi_env env, napi_callback_info info) {
  (void)info;
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return throw_errno(env, "posix_openpt", errno);
  char name[128];
  if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, sizeof name) != 0) {
    int err = errno;
    close(master);
    return throw_errno(env, "unlock pty", err);
  }
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    int err = errno;
    close(master);
    return throw_errno(env, "open pty slave", err);
  }
  return int_pair(env, master, slave);
}

static int arg_int(napi_env env, napi_value v, int *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static napi_value set_window_size(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, rows, cols;
  if (argc != 3 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &rows) || !arg_int(env, argv[2], &cols) ||
      rows < 0 || cols < 0 || rows > 65535 || cols > 65535) {
    napi_throw_type_error(env, NULL, "setWindowSize(fd, rows, cols) takes three integers, rows and cols 0..65535");
    return NULL;
  }
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0) return throw_errno(env, "TIOCSWINSZ", errno);
  return NULL;
}

static napi_value make_raw(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc != 1 || !arg_int(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "makeRaw(fd) takes an fd");
    return NULL;
  }
  struct termios t;
  if (tcgetattr(fd, &t) != 0) return throw_errno(env, "tcgetattr", errno);
  cfmakeraw(&t);
  if (tcsetattr(fd, TCSANOW, &t) != 0) return throw_errno(env, "tcsetattr", errno);
  return NULL;
}

static napi_value connect_seqpacket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  size_t len = 0;
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 ||
      len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "connectSeqpacket(path) takes a socket path");
    return NULL;
  }
  // Connect through /proc/self/fd/N so a socket path longer than sun_path still works.
  int pathfd = open(path, O_PATH | O_CLOEXEC);
  if (pathfd < 0) return throw_errno(env, path, errno);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d", pathfd);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    close(pathfd);
    return throw_errno(env, "socket", err);
  }
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc != 0 && errno == EINTR);
  int err = errno;
  close(pathfd);
  if (rc != 0) {
    close(fd);
    return throw_errno(env, path, err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// A socket belongs to the network namespace it was created in, whatever thread uses it later:
// a throwaway thread enters the pod's namespace, creates and connects the socket, and exits,
// so no thread of berthd's (least of all a libuv pool thread) ever changes namespace.
struct netns_connect {
  char netns[4096];
  int port;
  int ipv6;
  int fd;
  int err;
  const char *step;
  napi_async_work work;
  napi_ref callback;
};

static void *netns_connect_thread(void *arg) {
  struct netns_connect *c = arg;
  int nsfd = open(c->netns, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    c->err = errno, c->step = "open network namespace";
    return NULL;
  }
  // unshare(CLONE_FS) is not needed: setns(CLONE_NEWNET) affects only this thread.
  if (setns(nsfd, CLONE_NEWNET) != 0) {
    c->err = errno, c->step = "enter network namespace";
    close(nsfd);
    return NULL;
  }
  close(nsfd);
  int fd = socket(c->ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    c->err = errno, c->step = "socket";
    return NULL;
  }
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc;
  if (c->ipv6) {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)c->port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    do rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    while (rc != 0 && errno == EINTR);
  } else {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    do rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    while (rc != 0 && errno == EINTR);
  }
  if (rc != 0) {
    c->err = errno, c->step = "connect";
    close(fd);
    return NULL;
  }
  struct timeval none = {0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  c->fd = fd;
  return NULL;
}

// Runs fn(arg) on a fresh thread and waits for it; pthread_create's error, 0 when it ran.
static int run_on_own_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, fn, arg);
  if (rc == 0) pthread_join(t, NULL);
  return rc;
}

static void netns_connect_execute(napi_env env, void *data) {
  (void)env;
  struct netns_connect *c = data;
  int rc = run_on_own_thread(netns_connect_thread, c);
  if (rc != 0) c->err = rc, c->step = "pthread_create";
}

static void netns_connect_complete(napi_env env, napi_status status, void *data) {
  struct netns_connect *c = data;
  napi_value cb, global, argv[2];
  napi_get_reference_value(env, c->callback, &cb);
  napi_get_global(env, &global);
  if (status != napi_ok && c->err == 0) c->err = ECANCELED, c->step = "async work";
  if (c->err != 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", c->step, strerror(c->err));
    napi_value code, message;
    const char *name = c->err == ECONNREFUSED ? "ECONNREFUSED" : c->err == ENOENT ? "ENOENT" : c->err == EAFNOSUPPORT ? "EAFNOSUPPORT" : c->err == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : "ESYSCALL";
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argv[0]);
    napi_get_undefined(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, c->fd, &argv[1]);
  }
  napi_call_function(env, global, cb, 2, argv, NULL);
  napi_delete_reference(env, c->callback);
  napi_delete_async_work(env, c->work);
  free(c);
}

static napi_value connect_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct netns_connect *c = calloc(1, sizeof *c);
  if (!c) return throw_errno(env, "calloc", ENOMEM);
  size_t len = 0;
  bool ipv6 = false;
  napi_valuetype cbtype = napi_undefined;
  if (argc == 4) napi_typeof(env, argv[3], &cbtype);
  if (argc != 4 || napi_get_value_string_utf8(env, argv[0], c->netns, sizeof c->netns, &len) != napi_ok || len == 0 ||
      len >= sizeof c->netns - 1 || !arg_int(env, argv[1], &c->port) || c->port < 1 || c->port > 65535 ||
      napi_get_value_bool(env, argv[2], &ipv6) != napi_ok || cbtype != napi_function) {
    free(c);
    napi_throw_type_error(env, NULL, "connectInNetns(netnsPath, port 1..65535, ipv6, callback)");
    return NULL;
  }
  c->ipv6 = ipv6;
  c->fd = -1;
  napi_value name;
  napi_create_string_utf8(env, "berth.connectInNetns", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[3], 1, &c->callback);
  napi_create_async_work(env, NULL, name, netns_connect_execute, netns_connect_complete, c, &c->work);
  napi_queue_async_work(env, c->work);
  return NULL;
}

// Mounts and namespace pins. Each runs on a throwaway thread (started from a libuv pool
// thread, as connectInNetns): a mount with a cwd first unshares the thread's filesystem
// context (CLONE_FS) so chdir never moves berthd's own cwd, and new namespaces are entered
// by that thread alone and pinned by bind mounts of /proc/self/task/<tid>/ns/<kind> before
// it exits. Running mount(8), umount(8) and unshare(1) instead cost a fork and an exec each.
enum fs_op_kind { OP_MOUNT, OP_UNMOUNT, OP_PIN, OP_PIN_USERNS, OP_IDMAP };

struct fs_op {
  enum fs_op_kind kind;
  char source[256];
  char target[4096];
  char fstype[64];
  char data[4096];
  char cwd[4096];
  unsigned long flags;
  bool lazy;
  char ns_files[3][4096];  // net, ipc, uts: "" when not wanted
  char hostname[66];  // up to HOST_NAME_MAX (64) bytes
  char user_file[4096];  // OP_PIN_USERNS: the user namespace pin; OP_IDMAP: the user namespace to map through
  char uid_map[256], gid_map[256];
  char idmap_source[4096];
  int err;
  const char *step;
  napi_async_work work;
  napi_ref callback;
};

static const char *const NS_NAMES[3] = {"net", "ipc", "uts"};
static const int NS_FLAGS[3] = {CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS};

// The child of a user-namespace clone: waits for its maps, sets the hostname, reports, and
// stays until the parent has pinned its namespaces (its end of the pipe closes). It shares
// the parent's memory (CLONE_VM), so it makes raw system calls only.
struct userns_child {
  int go_r, go_w, ready_r, ready_w;
  const char *hostname;
};

static int userns_child_main(void *arg) {
  struct userns_child *c = arg;
  char b = 0;
  // Its own copies of the parent's ends (no CLONE_FILES): closed, so the parent's close is an EOF here.
  syscall(SYS_close, c->go_w);
  syscall(SYS_close, c->ready_r);
  if (syscall(SYS_read, c->go_r, &b, 1) != 1) syscall(SYS_exit, 1);
  int err = 0;
  if (c->hostname && syscall(SYS_sethostname, c->hostname, strlen(c->hostname)) != 0) err = errno;
  unsigned char e = (unsigned char)err;
  syscall(SYS_write, c->ready_w, &e, 1);
  syscall(SYS_read, c->go_r, &b, 1);  // EOF: the parent is done
  syscall(SYS_exit, 0);
  return 0;
}

static int write_file(const char *file, const char *text) {
  int fd = open(file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = write(fd, text, strlen(text));
  int err = n == (ssize_t)strlen(text) ? 0 : (n < 0 ? errno : EIO);
  close(fd);
  return err;
}

// unshare(CLONE_NEWUSER) and setns into a user namespace refuse a multithreaded caller, so a
// user namespace needs a process: a clone() child made in it (with the other namespaces, which
// the kernel creates owned by the new user namespace), whose maps this thread writes before
// anything else can join, and whose namespaces are bind-mounted before it exits.
static void pin_userns(struct fs_op *o) {
  enum { STACK = 64 * 1024 };
  int go[2] = {-1, -1}, ready[2] = {-1, -1};
  char *stack = NULL;
  pid_t pid = -1;
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0) {
    o->err = errno, o->step = "pipe";
    goto out;
  }
  stack = malloc(STACK);
  if (!stack) {
    o->err = ENOMEM, o->step = "malloc";
    goto out;
  }
  int flags = CLONE_VM | CLONE_NEWUSER | SIGCHLD;
  for (int i = 0; i < 3; i++)
    if (o->ns_files[i][0] != '\0') flags |= NS_FLAGS[i];
  struct userns_child c = {.go_r = go[0], .go_w = go[1], .ready_r = ready[0], .ready_w = ready[1], .hostname = o->ns_files[2][0] != '\0' ? o->hostname : NULL};
  // The child inherits this thread's mask: no Node signal handler ever runs on its stack.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = clone(userns_child_main, stack + STACK, flags, &c);
  int clone_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0) {
    o->err = clone_err, o->step = "clone(CLONE_NEWUSER)";
    goto out;
  }
  char file[64];
  snprintf(file, sizeof file, "/proc/%d/uid_map", (int)pid);
  if ((o->err = write_file(file, o->uid_map)) != 0) {
    o->step = "write uid_map";
    goto out;
  }
  snprintf(file, sizeof file, "/proc/%d/gid_map", (int)pid);
  if ((o->err = write_file(file, o->gid_map)) != 0) {
    o->step = "write gid_map";
    goto out;
  }
  unsigned char b = 0;
  if (write(go[1], &b, 1) != 1) {
    o->err = errno, o->step = "sync with the namespace child";
    goto out;
  }
  ssize_t got = read(ready[0], &b, 1);
  if (got != 1) {
    o->err = got < 0 ? errno : ECHILD, o->step = "wait for the namespace child";
    goto out;
  }
  if (b != 0) {
    o->err = b, o->step = "sethostname";
    goto out;
  }
  static const char *const kinds[4] = {"user", "net", "ipc", "uts"};
  for (int i = 0; i < 4; i++) {
    const char *dst = i == 0 ? o->user_file : o->ns_files[i - 1];
    if (dst[0] == '\0') continue;
    char src[64];
    snprintf(src, sizeof src, "/proc/%d/ns/%s", (int)pid, kinds[i]);
    if (mount(src, dst, NULL, MS_BIND, NULL) != 0) {
      snprintf(o->target, sizeof o->target, "%s", dst);
      o->err = errno, o->step = "bind-mount namespace";
      goto out;
    }
  }
out:
  if (go[1] >= 0) close(go[1]);
  if (pid > 0) {
    if (o->err != 0) kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  if (go[0] >= 0) close(go[0]);
  if (ready[0] >= 0) close(ready[0]);
  if (ready[1] >= 0) close(ready[1]);
  free(stack);
}

// A clone of the mount tree at idmap_source, idmapped through the user namespace at user_file,
// attached at target; with replace, target is idmap_source and the original mount is
// detached first (the clone keeps its superblock alive), so one mount stays there.
static void idmap_mount(struct fs_op *o, bool replace) {
  int ufd = open(o->user_file, O_RDONLY | O_CLOEXEC);
  if (ufd < 0) {
    o->err = errno, o->step = "open user namespace";
    return;
  }
  int tfd = open_tree(AT_FDCWD, o->idmap_source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tfd < 0) {
    o->err = errno, o->step = "open_tree(OPEN_TREE_CLONE)";
    close(ufd);
    return;
  }
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ufd};
  if (mount_setattr(tfd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    o->err = errno, o->step = "mount_setattr(MOUNT_ATTR_IDMAP)";
  } else if (replace && umount2(o->target, UMOUNT_NOFOLLOW | MNT_DETACH) != 0) {
    o->err = errno, o->step = "detach the unmapped mount";
  } else if (move_mount(tfd, "", AT_FDCWD, o->target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    o->err = errno, o->step = "move_mount";
  }
  close(tfd);
  close(ufd);
}

static void *fs_op_thread(void *arg) {
  struct fs_op *o = arg;
  switch (o->kind) {
    case OP_MOUNT:
      if (o->cwd[0] != '\0') {
        if (unshare(CLONE_FS) != 0) return o->err = errno, o->step = "unshare(CLONE_FS)", NULL;
        if (chdir(o->cwd) != 0) return o->err = errno, o->step = "chdir", NULL;
      }
      if (mount(o->source, o->target, o->fstype, o->flags, o->data[0] ? o->data : NULL) != 0) o->err = errno, o->step = "mount";
      return NULL;
    case OP_UNMOUNT:
      if (umount2(o->target, UMOUNT_NOFOLLOW | (o->lazy ? MNT_DETACH : 0)) != 0) o->err = errno, o->step = "umount";
      return NULL;
    case OP_PIN: {
      int flags = 0;
      for (int i = 0; i < 3; i++)
        if (o->ns_files[i][0] != '\0') flags |= NS_FLAGS[i];
      if (unshare(flags) != 0) return o->err = errno, o->step = "unshare", NULL;
      if (o->ns_files[2][0] != '\0' && sethostname(o->hostname, strlen(o->hostname)) != 0) return o->err = errno, o->step = "sethostname", NULL;
      pid_t tid = (pid_t)syscall(SYS_gettid);
      for (int i = 0; i < 3; i++) {
        if (o->ns_files[i][0] == '\0') continue;
        char src[64];
        snprintf(src, sizeof src, "/proc/self/task/%d/ns/%s", (int)tid, NS_NAMES[i]);
        if (mount(src, o->ns_files[i], NULL, MS_BIND, NULL) != 0) {
          snprintf(o->target, sizeof o->target, "%s", o->ns_files[i]);
          return o->err = errno, o->step = "bind-mount namespace", NULL;
        }
      }
      return NULL;
    }
    case OP_PIN_USERNS:
      pin_userns(o);
      return NULL;
    case OP_IDMAP:
      idmap_mount(o, o->lazy);
      return NULL;
  }
  return NULL;
}

static void fs_op_execute(napi_env env, void *data) {
  (void)env;
  struct fs_op *o = data;
  int rc = run_on_own_thread(fs_op_thread, o);
  if (rc != 0) o->err = rc, o->step = "pthread_create";
}

static const char *errno_name(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case ENODEV: return "ENODEV";
    case ENOSPC: return "ENOSPC";
    default: return "ESYSCALL";
  }
}

static void fs_op_complete(napi_env env, napi_status status, void *data) {
  struct fs_op *o = data;
  napi_value cb, global, argv[1];
  napi_get_reference_value(env, o->callback, &cb);
  napi_get_global(env, &global);
  if (status != napi_ok && o->err == 0) o->err = ECANCELED, o->step = "async work";
  if (o->err != 0) {
    char msg[4400];
    snprintf(msg, sizeof msg, "%s %s: %s", o->step, o->target, strerror(o->err));
    napi_value code, message, errnum;
    napi_create_string_utf8(env, errno_name(o->err), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argv[0]);
    napi_create_int32(env, o->err, &errnum);
    napi_set_named_property(env, argv[0], "errno", errnum);
  } else {
    napi_get_null(env, &argv[0]);
  }
  napi_call_function(env, global, cb, 1, argv, NULL);
  napi_delete_reference(env, o->callback);
  napi_delete_async_work(env, o->work);
  free(o);
}

// Copies a JS string into buf; false when it is not a string or does not fit.
static bool arg_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) return false;
  return len < size - 1 && strlen(buf) == len;  // no truncation, no embedded NUL
}

static napi_value queue_fs_op(napi_env env, struct fs_op *o, napi_value callback, const char *name) {
  napi_value resource;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_reference(env, callback, 1, &o->callback);
  napi_create_async_work(env, NULL, resource, fs_op_execute, fs_op_complete, o, &o->work);
  napi_queue_async_work(env, o->work);
  return NULL;
}

static bool is_function(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  return t == napi_function;
}

static napi_value mount_fs(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  int flags = 0;
  if (argc != 7 || !arg_string(env, argv[0], o->source, sizeof o->source) || !arg_string(env, argv[1], o->target, sizeof o->target) ||
      o->target[0] != '/' || !arg_string(env, argv[2], o->fstype, sizeof o->fstype) || !arg_int(env, argv[3], &flags) || flags < 0 ||
      !arg_string(env, argv[4], o->data, sizeof o->data) || !arg_string(env, argv[5], o->cwd, sizeof o->cwd) || !is_function(env, argv[6])) {
    free(o);
    napi_throw_type_error(env, NULL, "mountFs(source, absolute target, fstype, flags, data, cwd, callback): strings under the size limits");
    return NULL;
  }
  o->kind = OP_MOUNT;
  o->flags = (unsigned long)flags;
  return queue_fs_op(env, o, argv[6], "berth.mountFs");
}

static napi_value unmount_fs(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool lazy = false;
  if (argc != 3 || !arg_string(env, argv[0], o->target, sizeof o->target) || o->target[0] != '/' ||
      napi_get_value_bool(env, argv[1], &lazy) != napi_ok || !is_function(env, argv[2])) {
    free(o);
    napi_throw_type_error(env, NULL, "unmountFs(absolute target, lazy, callback)");
    return NULL;
  }
  o->kind = OP_UNMOUNT;
  o->lazy = lazy;
  return queue_fs_op(env, o, argv[2], "berth.unmountFs");
}

static napi_value pin_namespaces(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool ok = argc == 5 && is_function(env, argv[4]) && arg_string(env, argv[3], o->hostname, sizeof o->hostname);
  bool any = false;
  for (int i = 0; ok && i < 3; i++) {
    ok = arg_string(env, argv[i], o->ns_files[i], sizeof o->ns_files[i]) && (o->ns_files[i][0] == '\0' || o->ns_files[i][0] == '/');
    any = any || o->ns_files[i][0] != '\0';
  }
  if (!ok || !any) {
    free(o);
    napi_throw_type_error(env, NULL, "pinNamespaces(netFile, ipcFile, utsFile, hostname of at most 64 bytes, callback): absolute files, \"\" for none, at least one");
    return NULL;
  }
  o->kind = OP_PIN;
  return queue_fs_op(env, o, argv[4], "berth.pinNamespaces");
}

static napi_value pin_user_namespace(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool ok = argc == 8 && is_function(env, argv[7]) && arg_string(env, argv[0], o->user_file, sizeof o->user_file) && o->user_file[0] == '/' &&
            arg_string(env, argv[1], o->uid_map, sizeof o->uid_map) && o->uid_map[0] != '\0' &&
            arg_string(env, argv[2], o->gid_map, sizeof o->gid_map) && o->gid_map[0] != '\0' &&
            arg_string(env, argv[6], o->hostname, sizeof o->hostname);
  for (int i = 0; ok && i < 3; i++)
    ok = arg_string(env, argv[3 + i], o->ns_files[i], sizeof o->ns_files[i]) && (o->ns_files[i][0] == '\0' || o->ns_files[i][0] == '/');
  if (!ok) {
    free(o);
    napi_throw_type_error(env, NULL, "pinUserNamespace(absolute userFile, uidMap, gidMap, netFile, ipcFile, utsFile, hostname, callback): \"\" for no net/ipc/uts");
    return NULL;
  }
  snprintf(o->target, sizeof o->target, "%s", o->user_file);
  o->kind = OP_PIN_USERNS;
  return queue_fs_op(env, o, argv[7], "berth.pinUserNamespace");
}

static napi_value idmap_mount_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool replace = false;
  if (argc != 5 || !arg_string(env, argv[0], o->idmap_source, sizeof o->idmap_source) || o->idmap_source[0] != '/' ||
      !arg_string(env, argv[1], o->target, sizeof o->target) || o->target[0] != '/' ||
      !arg_string(env, argv[2], o->user_file, sizeof o->user_file) || o->user_file[0] != '/' ||
      napi_get_value_bool(env, argv[3], &replace) != napi_ok || !is_function(env, argv[4])) {
    free(o);
    napi_throw_type_error(env, NULL, "idmapMount(absolute source, absolute target, absolute usernsFile, replace, callback)");
    return NULL;
  }
  o->kind = OP_IDMAP;
  o->lazy = replace;
  return queue_fs_op(env, o, argv[4], "berth.idmapMount");
}

// A process's start time (clock ticks since boot, field 22 of /proc/PID/stat): with the pid it
// names one process for good, where a pid alone may be reused once the process is reaped.
static int read_start_time(int pid, char *out, size_t size) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int err = errno;
  close(fd);
  if (n <= 0) return n < 0 ? err : ESRCH;
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  char *p = strrchr(buf, ')');
  if (!p) return EINVAL;
  p++;
  // p is at the space before field 3; each step moves to the space before the next field.
  for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' ');
  if (!p) return EINVAL;
  p++;
  size_t len = strcspn(p, " ");
  if (len == 0 || len >= size) return EINVAL;
  memcpy(out, p, len);
  out[len] = '\0';
  return 0;
}

static napi_value proc_start_time(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int pid = 0;
  if (argc != 1 || !arg_int(env, argv[0], &pid) || pid <= 0) {
    napi_throw_type_error(env, NULL, "procStartTime(pid > 0)");
    return NULL;
  }
  char start[32];
  int err = read_start_time(pid, start, sizeof start);
  if (err == ENOENT || err == ESRCH) {
    napi_get_null(env, &out);
    return out;
  }
  if (err != 0) return throw_errno(env, "read /proc/PID/stat", err);
  napi_create_string_utf8(env, start, NAPI_AUTO_LENGTH, &out);
  return out;
}

// Signals pid only if it is still the process that started at startTime: the pidfd pins the
// process first, then the start time is checked, so a pid reused in between is never hit.
static napi_value signal_process(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int pid = 0, sig = 0;
  char want[32];
  if (argc != 3 || !arg_int(env, argv[0], &pid) || pid <= 0 || !arg_string(env, argv[1], want, sizeof want) ||
      !arg_int(env, argv[2], &sig) || sig <= 0 || sig >= 65) {
    napi_throw_type_error(env, NULL, "signalProcess(pid > 0, startTime, signal 1..64)");
    return NULL;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    if (errno == ESRCH) {
      napi_get_boolean(env, false, &out);
      return out;
    }
    return throw_errno(env, "pidfd_open", errno);
  }
  char have[32];
  int err = read_start_time(pid, have, sizeof have);
  bool same = err == 0 && strcmp(have, want) == 0;
  int rc = same ? (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) : 0;
  err = errno;
  close(pidfd);
  if (same && rc != 0 && err != ESRCH) return throw_errno(env, "pidfd_send_signal", err);
  napi_get_boolean(env, same && rc == 0, &out);
  return out;
}

// Short-lived helpers (runc, CNI plugins, conmon) are started with posix_spawn: glibc's runs
// the child with CLONE_VM|CLONE_VFORK, so nothing of berthd's address space is copied. libuv
// forks, which copies the page tables of the whole daemon and leaves its pages copy-on-write
// until the child execs: 1.5 ms for a 45 MiB process, 3 ms at 125 MiB, on every spawn.
// The child is berthd's own; libuv reaps only the pids it started, so a thread of ours waits
// for it and reports its status through a thread-safe function.
struct child {
  pid_t pid;
  napi_threadsafe_function tsfn;
  int code;    // exit code, or -1 when killed by a signal
  int signal;  // signal number, or 0
};

static void child_exit_call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  struct child *c = data;
  if (env != NULL && cb != NULL) {
    napi_value global, argv[2];
    napi_get_global(env, &global);
    napi_create_int32(env, c->code, &argv[0]);
    napi_create_int32(env, c->signal, &argv[1]);
    napi_call_function(env, global, cb, 2, argv, NULL);
  }
  free(c);
}

static void *child_wait_thread(void *arg) {
  struct child *c = arg;
  int status = 0;
  pid_t rc;
  do rc = waitpid(c->pid, &status, 0);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    c->code = -1, c->signal = 0;
  } else if (WIFEXITED(status)) {
    c->code = WEXITSTATUS(status), c->signal = 0;
  } else {
    c->code = -1, c->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  napi_threadsafe_function tsfn = c->tsfn;
  napi_call_threadsafe_function(tsfn, c, napi_tsfn_blocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

static napi_value make_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return throw_errno(env, "pipe2", errno);
  return int_pair(env, fds[0], fds[1]);
}

// A JS array of strings as a NULL-terminated C array (freed with free_strings).
static char **string_array(napi_env env, napi_value arr, uint32_t *count) {
  bool is_array = false;
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) return NULL;
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  char **out = calloc(n + 1, sizeof *out);
  if (!out) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    napi_get_element(env, arr, i, &v);
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || !(out[i] = malloc(len + 1))) {
      for (uint32_t k = 0; k < i; k++) free(out[k]);
      free(out);
      return NULL;
    }
    napi_get_value_string_utf8(env, v, out[i], len + 1, &len);
    if (strlen(out[i]) != len) {  // an embedded NUL
      for (uint32_t k = 0; k <= i; k++) free(out[k]);
      free(out);
      return NULL;
    }
  }
  *count = n;
  return out;
}

static void free_strings(char **a) {
  if (!a) return;
  for (char **p = a; *p; p++) free(*p);
  free(a);
}

static napi_value spawn_process(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char file[4096], cwd[4096];
  bool setsid_flag = false;
  uint32_t nargs = 0, nenv = 0, nstdio = 0;
  char **args = NULL, **envp = NULL;
  int stdio[16];
  bool ok = argc == 7 && arg_string(env, argv[0], file, sizeof file) && file[0] == '/' &&
            (args = string_array(env, argv[1], &nargs)) != NULL && nargs >= 1 &&
            (envp = string_array(env, argv[2], &nenv)) != NULL && arg_string(env, argv[3], cwd, sizeof cwd) &&
            napi_get_value_bool(env, argv[4], &setsid_flag) == napi_ok && is_function(env, argv[6]);
  if (ok) {
    bool is_array = false;
    ok = napi_is_array(env, argv[5], &is_array) == napi_ok && is_array && napi_get_array_length(env, argv[5], &nstdio) == napi_ok &&
         nstdio >= 3 && nstdio <= 16;
    for (uint32_t i = 0; ok && i < nstdio; i++) {
      napi_value v;
      napi_get_element(env, argv[5], i, &v);
      ok = arg_int(env, v, &stdio[i]) && stdio[i] >= -1;
    }
  }
  if (!ok) {
    free_strings(args);
    free_strings(envp);
    napi_throw_type_error(env, NULL, "spawnProcess(absolute file, [argv0, ...args], [\"K=V\", ...], cwd, setsid, [fd or -1 for /dev/null per child fd, 3..16], onExit)");
    return NULL;
  }
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    free_strings(args);
    free_strings(envp);
    return throw_errno(env, "open /dev/null", errno);
  }
  // Every source first moves above the child's fd range (close-on-exec copies), so no dup2
  // overwrites a source a later dup2 still needs.
  int src[16];
  for (uint32_t i = 0; i < nstdio; i++) {
    src[i] = fcntl(stdio[i] < 0 ? devnull : stdio[i], F_DUPFD_CLOEXEC, 64);
    if (src[i] < 0) {
      int err = errno;
      for (uint32_t k = 0; k < i; k++) close(src[k]);
      close(devnull);
      free_strings(args);
      free_strings(envp);
      return throw_errno(env, "dup stdio fd", err);
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  for (uint32_t i = 0; i < nstdio; i++) posix_spawn_file_actions_adddup2(&fa, src[i], (int)i);
  if (cwd[0] != '\0') posix_spawn_file_actions_addchdir_np(&fa, cwd);
  // Node ignores SIGPIPE and may block signals: the child starts with default dispositions and
  // nothing blocked, as after libuv's fork.
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (setsid_flag ? POSIX_SPAWN_SETSID : 0);
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, file, &fa, &attr, args, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  for (uint32_t i = 0; i < nstdio; i++) close(src[i]);
  close(devnull);
  free_strings(args);
  free_strings(envp);
  if (rc != 0) return throw_errno(env, file, rc);

  struct child *c = calloc(1, sizeof *c);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  napi_value resource;
  napi_create_string_utf8(env, "berth.spawnProcess", NAPI_AUTO_LENGTH, &resource);
  pthread_t t;
  if (!c || pidfd < 0 || napi_create_threadsafe_function(env, argv[6], NULL, resource, 0, 1, NULL, NULL, NULL, child_exit_call_js, &c->tsfn) != napi_ok) {
    int err = pidfd < 0 ? errno : ENOMEM;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (pidfd >= 0) close(pidfd);
    free(c);
    return throw_errno(env, "spawn bookkeeping", err);
  }
  c->pid = pid;
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&ta, 64 * 1024);
  rc = pthread_create(&t, &ta, child_wait_thread, c);
  pthread_attr_destroy(&ta);
  if (rc != 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pidfd);
    napi_release_threadsafe_function(c->tsfn, napi_tsfn_abort);
    free(c);
    return throw_errno(env, "pthread_create", rc);
  }
  return int_pair(env, pid, pidfd);
}

static napi_value pidfd_signal(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int pidfd = -1, sig = 0;
  if (argc != 2 || !arg_int(env, argv[0], &pidfd) || pidfd < 0 || !arg_int(env, argv[1], &sig) || sig <= 0 || sig >= 65) {
    napi_throw_type_error(env, NULL, "pidfdSignal(pidfd, signal 1..64)");
    return NULL;
  }
  int rc = (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
  if (rc != 0 && errno != ESRCH) return throw_errno(env, "pidfd_send_signal", errno);
  napi_get_boolean(env, rc == 0, &out);
  return out;
}

// Freed Buffers (a pull's socket and zlib chunks, child process output) go back to glibc's
// heap, which keeps the pages: after a burst they stay resident until reused. malloc_trim
// releases every free page of every arena. Returns whether any memory was released.
static napi_value trim_malloc(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) == 1, &out);
  return out;
}

// A unix address for path; "@name" is the abstract name (no trailing NUL, as systemd reads it).
static bool unix_address(const char *path, struct sockaddr_un *addr, socklen_t *len) {
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof addr->sun_path) return false;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path, n);
  if (path[0] == '@') addr->sun_path[0] = '\0';
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
  return true;
}

// systemd's notification protocol ($NOTIFY_SOCKET) without libsystemd: one datagram per state.
static napi_value send_datagram(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof ((struct sockaddr_un *)0)->sun_path + 1];
  char msg[4096];
  struct sockaddr_un addr;
  socklen_t len;
  if (argc != 2 || !arg_string(env, argv[0], path, sizeof path) || !arg_string(env, argv[1], msg, sizeof msg) ||
      !unix_address(path, &addr, &len)) {
    napi_throw_type_error(env, NULL, "sendDatagram(path, message) takes a unix socket path (under 108 bytes) and a message");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  ssize_t rc;
  do rc = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
  while (rc < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (rc < 0) return throw_errno(env, path, err);
  return NULL;
}

static napi_value bind_datagram(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof ((struct sockaddr_un *)0)->sun_path + 1];
  struct sockaddr_un addr;
  socklen_t len;
  if (argc != 1 || !arg_string(env, argv[0], path, sizeof path) || !unix_address(path, &addr, &len)) {
    napi_throw_type_error(env, NULL, "bindDatagram(path) takes a unix socket path (under 108 bytes)");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (bind(fd, (struct sockaddr *)&addr, len) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, path, err);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value recv_datagram(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc != 1 || !arg_int(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "recvDatagram(fd) takes an fd");
    return NULL;
  }
  char buf[4096];
  ssize_t n;
  do n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  napi_value out;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_get_null(env, &out);
      return out;
    }
    return throw_errno(env, "recv", errno);
  }
  napi_create_string_utf8(env, buf, (size_t)n, &out);
  return out;
}

// Batched reads for the metrics RPCs: one async work opens, reads and closes a list of small
// kernel files, where Node's fs would take three pool hops and a JS callback per file.
struct read_files {
  napi_async_work work;
  napi_ref callback;
  uint32_t count;
  size_t max;
  char **paths;
  char **texts;
  ssize_t *lens;
};

static void read_files_free(struct read_files *r) {
  for (uint32_t i = 0; i < r->count; i++) {
    free(r->paths ? r->paths[i] : NULL);
    free(r->texts ? r->texts[i] : NULL);
  }
  free(r->paths);
  free(r->texts);
  free(r->lens);
  free(r);
}

static void read_files_execute(napi_env env, void *data) {
  (void)env;
  struct read_files *r = data;
  for (uint32_t i = 0; i < r->count; i++) {
    r->lens[i] = -1;
    int fd = open(r->paths[i], O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) continue;
    char *buf = malloc(r->max);
    size_t got = 0;
    bool ok = buf != NULL;
    while (ok && got < r->max) {
      ssize_t n = read(fd, buf + got, r->max - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) ok = false;
      if (n <= 0) break;
      got += (size_t)n;
    }
    close(fd);
    if (!ok) {
      free(buf);
      continue;
    }
    r->texts[i] = buf;
    r->lens[i] = (ssize_t)got;
  }
}

static void read_files_complete(napi_env env, napi_status status, void *data) {
  struct read_files *r = data;
  napi_value cb, global, argv[2];
  napi_get_reference_value(env, r->callback, &cb);
  napi_get_global(env, &global);
  if (status != napi_ok) {
    napi_value code, message;
    napi_create_string_utf8(env, "ECANCELED", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "readFiles: async work cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argv[0]);
    napi_get_undefined(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_array_with_length(env, r->count, &argv[1]);
    for (uint32_t i = 0; i < r->count; i++) {
      napi_value v;
      if (r->lens[i] < 0) napi_get_null(env, &v);
      else napi_create_string_latin1(env, r->texts[i], (size_t)r->lens[i], &v);
      napi_set_element(env, argv[1], i, v);
    }
  }
  napi_call_function(env, global, cb, 2, argv, NULL);
  napi_delete_reference(env, r->callback);
  napi_delete_async_work(env, r->work);
  read_files_free(r);
}

static napi_value read_files(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_array = false;
  uint32_t count = 0;
  int max = 0;
  if (argc == 3) napi_is_array(env, argv[0], &is_array);
  if (!is_array || napi_get_array_length(env, argv[0], &count) != napi_ok || !arg_int(env, argv[1], &max) || max < 1 || max > (1 << 24) || !is_function(env, argv[2])) {
    napi_throw_type_error(env, NULL, "readFiles(paths: string[], maxBytes 1..16 MiB, callback)");
    return NULL;
  }
  struct read_files *r = calloc(1, sizeof *r);
  if (!r) return throw_errno(env, "calloc", ENOMEM);
  r->count = count;
  r->max = (size_t)max;
  r->paths = calloc(count ? count : 1, sizeof *r->paths);
  r->texts = calloc(count ? count : 1, sizeof *r->texts);
  r->lens = calloc(count ? count : 1, sizeof *r->lens);
  if (!r->paths || !r->texts || !r->lens) {
    read_files_free(r);
    return throw_errno(env, "calloc", ENOMEM);
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    size_t len = 0;
    napi_get_element(env, argv[0], i, &v);
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len == 0 || len > 4096 || !(r->paths[i] = malloc(len + 1))) {
      read_files_free(r);
      napi_throw_type_error(env, NULL, "readFiles: every path must be a string of 1..4096 bytes");
      return NULL;
    }
    napi_get_value_string_utf8(env, v, r->paths[i], len + 1, &len);
    if (strlen(r->paths[i]) != len) {
      read_files_free(r);
      napi_throw_type_error(env, NULL, "readFiles: a path holds a NUL byte");
      return NULL;
    }
  }
  napi_value name;
  napi_create_string_utf8(env, "berth.readFiles", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[2], 1, &r->callback);
  napi_create_async_work(env, NULL, name, read_files_execute, read_files_complete, r, &r->work);
  napi_queue_async_work(env, r->work);
  return NULL;
}

// Open descriptors and sockets of processes (container_file_descriptors, container_sockets):
// a readdir of /proc/PID/fd and a readlink per entry, on one pool thread for all pids.
struct count_fds {
  napi_async_work work;
  napi_ref callback;
  uint32_t count;
  int *pids;
  uint32_t *out;  // 2 per pid: fds, sockets
};

static void count_fds_execute(napi_env env, void *data) {
  (void)env;
  struct count_fds *c = data;
  for (uint32_t i = 0; i < c->count; i++) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", c->pids[i]);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) continue;
    DIR *d = fdopendir(dfd);
    if (!d) {
      close(dfd);
      continue;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      c->out[2 * i]++;
      char link[64];
      ssize_t n = readlinkat(dfd, e->d_name, link, sizeof link - 1);
      if (n >= 7 && memcmp(link, "socket:", 7) == 0) c->out[2 * i + 1]++;
    }
    closedir(d);
  }
}

static void count_fds_complete(napi_env env, napi_status status, void *data) {
  struct count_fds *c = data;
  napi_value cb, global, argv[2];
  napi_get_reference_value(env, c->callback, &cb);
  napi_get_global(env, &global);
  napi_get_null(env, &argv[0]);
  napi_create_array_with_length(env, 2 * c->count, &argv[1]);
  for (uint32_t i = 0; status == napi_ok && i < 2 * c->count; i++) {
    napi_value v;
    napi_create_uint32(env, c->out[i], &v);
    napi_set_element(env, argv[1], i, v);
  }
  napi_call_function(env, global, cb, 2, argv, NULL);
  napi_delete_reference(env, c->callback);
  napi_delete_async_work(env, c->work);
  free(c->pids);
  free(c->out);
  free(c);
}

static napi_value count_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_array = false;
  uint32_t count = 0;
  if (argc == 2) napi_is_array(env, argv[0], &is_array);
  if (!is_array || napi_get_array_length(env, argv[0], &count) != napi_ok || !is_function(env, argv[1])) {
    napi_throw_type_error(env, NULL, "countFds(pids: number[], callback)");
    return NULL;
  }
  struct count_fds *c = calloc(1, sizeof *c);
  if (c) c->pids = calloc(count ? count : 1, sizeof *c->pids), c->out = calloc(2 * (count ? count : 1), sizeof *c->out);
  if (!c || !c->pids || !c->out) {
    if (c) free(c->pids), free(c->out);
    free(c);
    return throw_errno(env, "calloc", ENOMEM);
  }
  c->count = count;
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    napi_get_element(env, argv[0], i, &v);
    if (!arg_int(env, v, &c->pids[i]) || c->pids[i] <= 0) {
      free(c->pids), free(c->out), free(c);
      napi_throw_type_error(env, NULL, "countFds: every pid must be a positive integer");
      return NULL;
    }
  }
  napi_value name;
  napi_create_string_utf8(env, "berth.countFds", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[1], 1, &c->callback);
  napi_create_async_work(env, NULL, name, count_fds_execute, count_fds_complete, c, &c->work);
  napi_queue_async_work(env, c->work);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sendDatagram", NULL, send_datagram, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bindDatagram", NULL, bind_datagram, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvDatagram", NULL, recv_datagram, NULL, NULL, NULL, napi_enumerable, NULL},
      {"trimMalloc", NULL, trim_malloc, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mountFs", NULL, mount_fs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unmountFs", NULL, unmount_fs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pinNamespaces", NULL, pin_namespaces, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pinUserNamespace", NULL, pin_user_namespace, NULL, NULL, NULL, napi_enumerable, NULL},
      {"idmapMount", NULL, idmap_mount_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"procStartTime", NULL, proc_start_time, NULL, NULL, NULL, napi_enumerable, NULL},
      {"signalProcess", NULL, signal_process, NULL, NULL, NULL, napi_enumerable, NULL},
      {"makePipe", NULL, make_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawnProcess", NULL, spawn_process, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdSignal", NULL, pidfd_signal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openPty", NULL, open_pty, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setWindowSize", NULL, set_window_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"makeRaw", NULL, make_raw, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectSeqpacket", NULL, connect_seqpacket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectInNetns", NULL, connect_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readFiles", NULL, read_files, NULL, NULL, NULL, napi_enumerable, NULL},
      {"countFds", NULL, count_fds, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
