// Batched reads of small kernel files for the metrics RPCs: cgroup and /proc files, and the
// open descriptors of processes.
#include "native.h"

#include <dirent.h>
#include <fcntl.h>

// One async work opens, reads and closes a list of small kernel files, where Node's fs would
// take three pool hops and a JS callback per file.
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
  napi_value argv[2];
  if (status != napi_ok) {
    napi_value code, message;
    napi_create_string_utf8(env, "ECANCELED", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "readFiles: async work cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &argv[0]);
    napi_get_undefined(env, &argv[1]);
  } else {
    argv[0] = js_null(env);
    napi_create_array_with_length(env, r->count, &argv[1]);
    for (uint32_t i = 0; i < r->count; i++) {
      napi_value v;
      if (r->lens[i] < 0) v = js_null(env);
      else napi_create_string_latin1(env, r->texts[i], (size_t)r->lens[i], &v);
      napi_set_element(env, argv[1], i, v);
    }
  }
  finish_work(env, r->callback, r->work, 2, argv);
  read_files_free(r);
}

napi_value read_files(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint32_t count = 0;
  int max = 0;
  if (!get_args(env, info, 3, argv) || !is_array(env, argv[0]) || napi_get_array_length(env, argv[0], &count) != napi_ok ||
      !arg_int(env, argv[1], &max) || max < 1 || max > (1 << 24) || !is_function(env, argv[2]))
    return type_error(env, "readFiles(paths: string[], maxBytes 1..16 MiB, callback)");
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
      return type_error(env, "readFiles: every path must be a string of 1..4096 bytes");
    }
    napi_get_value_string_utf8(env, v, r->paths[i], len + 1, &len);
    if (strlen(r->paths[i]) != len) {
      read_files_free(r);
      return type_error(env, "readFiles: a path holds a NUL byte");
    }
  }
  queue_work(env, "berth.readFiles", argv[2], read_files_execute, read_files_complete, r, &r->work, &r->callback);
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
