// berth-exec: the parent an ExecSync process needs, and nothing more. berthd starts it (in
// its own session) with the pipes the process should write to as fds 1 and 2 and a report
// pipe as fd 3:
//
//   berth-exec <pid-file> <runtime> <runtime args...>
//
// where the runtime command line is `runc ... exec --detach --pid-file <pid-file> ...`. It
// becomes a child subreaper, runs the runtime with fds 0-2 (which `exec --detach` hands to the
// process), and once the runtime has returned, waits for the process: orphaned by the runtime,
// it is reparented here. Then it writes one line to fd 3 and exits:
//   "exit N"      the process exited with status N
//   "signal N"    the process was killed by signal N
//   "runtime N"   the runtime failed (exit status N, or 128+signal) before the process ran; its
//                 error is on fd 2
//   "error TEXT"  berth-exec itself could not do its job
// Children the process leaves behind belong to the container's PID namespace (its init reaps
// them) and keep running; whoever reads fds 1 and 2 stops when it likes.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int report(const char *fmt, long value) {
  dprintf(3, fmt, value);
  return 0;
}

static int fail(const char *what) {
  dprintf(3, "error %s: %s\n", what, strerror(errno));
  return 1;
}

static pid_t read_pid(const char *file) {
  char buf[32] = {0};
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  char *end = NULL;
  long pid = strtol(buf, &end, 10);
  return pid > 0 && end != buf ? (pid_t)pid : -1;
}

int main(int argc, char **argv) {
  if (argc < 3 || argv[2][0] != '/') {
    fprintf(stderr, "usage: berth-exec <pid-file> </absolute/runtime> [runtime args...]\n");
    return 2;
  }
  // The report pipe is for berthd alone: neither the runtime nor the process inherits it.
  if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0) {
    fprintf(stderr, "berth-exec: fd 3 (the report pipe) is not open\n");
    return 2;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return fail("prctl(PR_SET_CHILD_SUBREAPER)");
  pid_t runtime;
  int rc = posix_spawn(&runtime, argv[2], NULL, NULL, &argv[2], environ);
  if (rc != 0) {
    errno = rc;
    return fail(argv[2]);
  }
  int status = 0;
  while (waitpid(runtime, &status, 0) < 0)
    if (errno != EINTR) return fail("wait for the runtime");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // The process may have started anyway (the runtime failed late): it is ended, not left behind.
    pid_t started = read_pid(argv[1]);
    if (started > 0) kill(started, SIGKILL);
    return report("runtime %ld\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  pid_t pid = read_pid(argv[1]);
  if (pid <= 0) {
    errno = ENOENT;
    return fail("read the process's pid file");
  }
  for (;;) {
    pid_t got = waitpid(-1, &status, 0);
    if (got == pid) break;
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail("wait for the process");
    // Some other child of the runtime's, reparented here: reaped and ignored.
  }
  if (WIFEXITED(status)) return report("exit %ld\n", WEXITSTATUS(status));
  return report("signal %ld\n", WTERMSIG(status));
}
