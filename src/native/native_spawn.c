// Processes: helpers started with posix_spawn and reaped by a thread of ours, signals through
// pidfds, and a process's start time (with the pid, it names one process for good).
#include "native.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>

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

napi_value proc_start_time(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int pid = 0;
  if (!get_args(env, info, 1, argv) || !arg_int(env, argv[0], &pid) || pid <= 0) return type_error(env, "procStartTime(pid > 0)");
  char start[32];
  int err = read_start_time(pid, start, sizeof start);
  if (err == ENOENT || err == ESRCH) return js_null(env);
  if (err != 0) return throw_errno(env, "read /proc/PID/stat", err);
  napi_create_string_utf8(env, start, NAPI_AUTO_LENGTH, &out);
  return out;
}

// Signals pid only if it is still the process that started at startTime: the pidfd pins the
// process first, then the start time is checked, so a pid reused in between is never hit.
napi_value signal_process(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int pid = 0, sig = 0;
  char want[32];
  if (!get_args(env, info, 3, argv) || !arg_int(env, argv[0], &pid) || pid <= 0 || !arg_string(env, argv[1], want, sizeof want) ||
      !arg_int(env, argv[2], &sig) || sig <= 0 || sig >= 65)
    return type_error(env, "signalProcess(pid > 0, startTime, signal 1..64)");
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    if (errno == ESRCH) return js_bool(env, false);
    return throw_errno(env, "pidfd_open", errno);
  }
  char have[32];
  int err = read_start_time(pid, have, sizeof have);
  bool same = err == 0 && strcmp(have, want) == 0;
  int rc = same ? (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) : 0;
  err = errno;
  close(pidfd);
  if (same && rc != 0 && err != ESRCH) return throw_errno(env, "pidfd_send_signal", err);
  return js_bool(env, same && rc == 0);
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
    argv[0] = js_int(env, c->code);
    argv[1] = js_int(env, c->signal);
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

napi_value make_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return throw_errno(env, "pipe2", errno);
  return int_pair(env, fds[0], fds[1]);
}

// A JS array of strings as a NULL-terminated C array (freed with free_strings).
static char **string_array(napi_env env, napi_value arr, uint32_t *count) {
  if (!is_array(env, arr)) return NULL;
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

napi_value spawn_process(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  bool n_ok = get_args(env, info, 7, argv);
  char file[4096], cwd[4096];
  bool setsid_flag = false;
  uint32_t nargs = 0, nenv = 0, nstdio = 0;
  char **args = NULL, **envp = NULL;
  int stdio[16];
  bool ok = n_ok && arg_string(env, argv[0], file, sizeof file) && file[0] == '/' &&
            (args = string_array(env, argv[1], &nargs)) != NULL && nargs >= 1 &&
            (envp = string_array(env, argv[2], &nenv)) != NULL && arg_string(env, argv[3], cwd, sizeof cwd) &&
            napi_get_value_bool(env, argv[4], &setsid_flag) == napi_ok && is_function(env, argv[6]);
  if (ok) {
    ok = is_array(env, argv[5]) && napi_get_array_length(env, argv[5], &nstdio) == napi_ok && nstdio >= 3 && nstdio <= 16;
    for (uint32_t i = 0; ok && i < nstdio; i++) {
      napi_value v;
      napi_get_element(env, argv[5], i, &v);
      ok = arg_int(env, v, &stdio[i]) && stdio[i] >= -1;
    }
  }
  if (!ok) {
    free_strings(args);
    free_strings(envp);
    return type_error(env, "spawnProcess(absolute file, [argv0, ...args], [\"K=V\", ...], cwd, setsid, [fd or -1 for /dev/null per child fd, 3..16], onExit)");
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

napi_value pidfd_signal(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int pidfd = -1, sig = 0;
  if (!get_args(env, info, 2, argv) || !arg_int(env, argv[0], &pidfd) || pidfd < 0 || !arg_int(env, argv[1], &sig) || sig <= 0 || sig >= 65)
    return type_error(env, "pidfdSignal(pidfd, signal 1..64)");
  int rc = (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
  if (rc != 0 && errno != ESRCH) return throw_errno(env, "pidfd_send_signal", errno);
  return js_bool(env, rc == 0);
}

