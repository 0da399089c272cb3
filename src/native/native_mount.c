// Mounts and namespaces: mount(2) and umount2(2), new namespaces pinned by bind mounts (a user
// namespace through a clone() child), idmapped mounts (open_tree, mount_setattr, move_mount);
// and the device nodes and xattrs of unpacked layers, which go the same way.
#include "native.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

// Each runs on a throwaway thread (started from a libuv pool thread, as connectInNetns): a
// mount with a cwd first unshares the thread's filesystem context (CLONE_FS) so chdir never
// moves berthd's own cwd, and new namespaces are entered by that thread alone and pinned by
// bind mounts of /proc/self/task/<tid>/ns/<kind> before it exits. Running mount(8), umount(8) and unshare(1) instead cost a fork and an exec each.
// Device nodes and extended attributes of unpacked layers (whiteouts, opaque directories) go
// the same way: mknod(1) and setfattr(1) forked berthd once per entry.
enum fs_op_kind { OP_MOUNT, OP_UNMOUNT, OP_PIN, OP_PIN_USERNS, OP_IDMAP, OP_MKNOD, OP_SETXATTR };

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
  unsigned int mode;  // mknod: file type and permission bits
  unsigned int major, minor;
  size_t value_len;  // setxattr: bytes of data used
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
    case OP_MKNOD:
      if (mknod(o->target, o->mode, makedev(o->major, o->minor)) != 0) return o->err = errno, o->step = "mknod", NULL;
      // The permission bits exactly as asked, whatever berthd's umask.
      if (fchmodat(AT_FDCWD, o->target, o->mode & 07777, 0) != 0) o->err = errno, o->step = "chmod";
      return NULL;
    case OP_SETXATTR:
      if (lsetxattr(o->target, o->source, o->data, o->value_len, 0) != 0) o->err = errno, o->step = "lsetxattr";
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
    case EEXIST: return "EEXIST";
    case ENOTSUP: return "ENOTSUP";
    default: return "ESYSCALL";
  }
}

static void fs_op_complete(napi_env env, napi_status status, void *data) {
  struct fs_op *o = data;
  napi_value argv[1];
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
    argv[0] = js_null(env);
  }
  finish_work(env, o->callback, o->work, 1, argv);
  free(o);
}

static napi_value queue_fs_op(napi_env env, struct fs_op *o, napi_value callback, const char *name) {
  queue_work(env, name, callback, fs_op_execute, fs_op_complete, o, &o->work, &o->callback);
  return NULL;
}

napi_value mount_fs(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  bool n_ok = get_args(env, info, 7, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  int flags = 0;
  if (!n_ok || !arg_string(env, argv[0], o->source, sizeof o->source) || !arg_string(env, argv[1], o->target, sizeof o->target) ||
      o->target[0] != '/' || !arg_string(env, argv[2], o->fstype, sizeof o->fstype) || !arg_int(env, argv[3], &flags) || flags < 0 ||
      !arg_string(env, argv[4], o->data, sizeof o->data) || !arg_string(env, argv[5], o->cwd, sizeof o->cwd) || !is_function(env, argv[6])) {
    free(o);
    return type_error(env, "mountFs(source, absolute target, fstype, flags, data, cwd, callback): strings under the size limits");
  }
  o->kind = OP_MOUNT;
  o->flags = (unsigned long)flags;
  return queue_fs_op(env, o, argv[6], "berth.mountFs");
}

napi_value unmount_fs(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool n_ok = get_args(env, info, 3, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool lazy = false;
  if (!n_ok || !arg_string(env, argv[0], o->target, sizeof o->target) || o->target[0] != '/' ||
      napi_get_value_bool(env, argv[1], &lazy) != napi_ok || !is_function(env, argv[2])) {
    free(o);
    return type_error(env, "unmountFs(absolute target, lazy, callback)");
  }
  o->kind = OP_UNMOUNT;
  o->lazy = lazy;
  return queue_fs_op(env, o, argv[2], "berth.unmountFs");
}

napi_value pin_namespaces(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  bool n_ok = get_args(env, info, 5, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool ok = n_ok && is_function(env, argv[4]) && arg_string(env, argv[3], o->hostname, sizeof o->hostname);
  bool any = false;
  for (int i = 0; ok && i < 3; i++) {
    ok = arg_string(env, argv[i], o->ns_files[i], sizeof o->ns_files[i]) && (o->ns_files[i][0] == '\0' || o->ns_files[i][0] == '/');
    any = any || o->ns_files[i][0] != '\0';
  }
  if (!ok || !any) {
    free(o);
    return type_error(env, "pinNamespaces(netFile, ipcFile, utsFile, hostname of at most 64 bytes, callback): absolute files, \"\" for none, at least one");
  }
  o->kind = OP_PIN;
  return queue_fs_op(env, o, argv[4], "berth.pinNamespaces");
}

napi_value pin_user_namespace(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  bool n_ok = get_args(env, info, 8, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool ok = n_ok && is_function(env, argv[7]) && arg_string(env, argv[0], o->user_file, sizeof o->user_file) && o->user_file[0] == '/' &&
            arg_string(env, argv[1], o->uid_map, sizeof o->uid_map) && o->uid_map[0] != '\0' &&
            arg_string(env, argv[2], o->gid_map, sizeof o->gid_map) && o->gid_map[0] != '\0' &&
            arg_string(env, argv[6], o->hostname, sizeof o->hostname);
  for (int i = 0; ok && i < 3; i++)
    ok = arg_string(env, argv[3 + i], o->ns_files[i], sizeof o->ns_files[i]) && (o->ns_files[i][0] == '\0' || o->ns_files[i][0] == '/');
  if (!ok) {
    free(o);
    return type_error(env, "pinUserNamespace(absolute userFile, uidMap, gidMap, netFile, ipcFile, utsFile, hostname, callback): \"\" for no net/ipc/uts");
  }
  snprintf(o->target, sizeof o->target, "%s", o->user_file);
  o->kind = OP_PIN_USERNS;
  return queue_fs_op(env, o, argv[7], "berth.pinUserNamespace");
}

napi_value idmap_mount_js(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  bool n_ok = get_args(env, info, 5, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  bool replace = false;
  if (!n_ok || !arg_string(env, argv[0], o->idmap_source, sizeof o->idmap_source) || o->idmap_source[0] != '/' ||
      !arg_string(env, argv[1], o->target, sizeof o->target) || o->target[0] != '/' ||
      !arg_string(env, argv[2], o->user_file, sizeof o->user_file) || o->user_file[0] != '/' ||
      napi_get_value_bool(env, argv[3], &replace) != napi_ok || !is_function(env, argv[4])) {
    free(o);
    return type_error(env, "idmapMount(absolute source, absolute target, absolute usernsFile, replace, callback)");
  }
  o->kind = OP_IDMAP;
  o->lazy = replace;
  return queue_fs_op(env, o, argv[4], "berth.idmapMount");
}

napi_value make_node(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  bool n_ok = get_args(env, info, 5, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  int mode = 0, major = 0, minor = 0;
  if (!n_ok || !arg_string(env, argv[0], o->target, sizeof o->target) || o->target[0] != '/' || !arg_int(env, argv[1], &mode) ||
      !(S_ISCHR(mode) || S_ISBLK(mode) || S_ISFIFO(mode)) || !arg_int(env, argv[2], &major) || major < 0 || !arg_int(env, argv[3], &minor) ||
      minor < 0 || !is_function(env, argv[4])) {
    free(o);
    return type_error(env, "makeNode(absolute path, mode with S_IFCHR/S_IFBLK/S_IFIFO, major, minor, callback)");
  }
  o->kind = OP_MKNOD;
  o->mode = (unsigned int)mode;
  o->major = (unsigned int)major;
  o->minor = (unsigned int)minor;
  return queue_fs_op(env, o, argv[4], "berth.makeNode");
}

napi_value set_xattr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool n_ok = get_args(env, info, 4, argv);
  struct fs_op *o = calloc(1, sizeof *o);
  if (!o) return throw_errno(env, "calloc", ENOMEM);
  void *value = NULL;
  size_t len = 0;
  bool is_buffer = false;
  if (n_ok) napi_is_buffer(env, argv[2], &is_buffer);
  if (!n_ok || !arg_string(env, argv[0], o->target, sizeof o->target) || o->target[0] != '/' || !arg_string(env, argv[1], o->source, sizeof o->source) ||
      !is_buffer || napi_get_buffer_info(env, argv[2], &value, &len) != napi_ok || len > sizeof o->data || !is_function(env, argv[3])) {
    free(o);
    return type_error(env, "setXattr(absolute path, name, Buffer of at most 4096 bytes, callback)");
  }
  o->kind = OP_SETXATTR;
  if (len) memcpy(o->data, value, len);
  o->value_len = len;
  return queue_fs_op(env, o, argv[3], "berth.setXattr");
}
