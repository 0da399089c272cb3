// The open descriptors of processes, for the metrics RPCs (the cgroup and /proc files they read
// are small enough to read synchronously: src/proc.ts readProcText).
#include "native.h"

#include <dirent.h>
#include <fcntl.h>

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
  napi_value argv[2];
  argv[0] = js_null(env);
  napi_create_array_with_length(env, 2 * c->count, &argv[1]);
  for (uint32_t i = 0; status == napi_ok && i < 2 * c->count; i++) {
    napi_value v;
    napi_create_uint32(env, c->out[i], &v);
    napi_set_element(env, argv[1], i, v);
  }
  finish_work(env, c->callback, c->work, 2, argv);
  free(c->pids);
  free(c->out);
  free(c);
}

napi_value count_fds(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t count = 0;
  if (!get_args(env, info, 2, argv) || !is_array(env, argv[0]) || napi_get_array_length(env, argv[0], &count) != napi_ok || !is_function(env, argv[1]))
    return type_error(env, "countFds(pids: number[], callback)");
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
      return type_error(env, "countFds: every pid must be a positive integer");
    }
  }
  queue_work(env, "berth.countFds", argv[1], count_fds_execute, count_fds_complete, c, &c->work, &c->callback);
  return NULL;
}
