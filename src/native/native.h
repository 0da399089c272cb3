// What the addon's C files share: the N-API argument and result helpers every export uses,
// the async-work plumbing, and each file's exports (registered in berth_native.c).
// Every .c file includes this first (it defines _GNU_SOURCE before any system header).
#ifndef BERTH_NATIVE_H
#define BERTH_NATIVE_H

#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Throws an Error "what: strerror(err)" with .code (ENOENT, ECONNREFUSED, EACCES, else
// ESYSCALL) and .errno; returns NULL for the export to return. (In berth_native.c.)
napi_value throw_errno(napi_env env, const char *what, int err);

// Throws a TypeError naming the export's arguments; returns NULL for the export to return.
static inline napi_value type_error(napi_env env, const char *usage) {
  napi_throw_type_error(env, NULL, usage);
  return NULL;
}

// The call's arguments into argv[0..n-1]; false when it passed another number of them.
static inline bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return argc == n;
}

static inline bool arg_int(napi_env env, napi_value v, int *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

// Copies a JS string into buf; false when it is not a string or does not fit.
static inline bool arg_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) return false;
  return len < size - 1 && strlen(buf) == len;  // no truncation, no embedded NUL
}

static inline bool is_function(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  return t == napi_function;
}

static inline bool is_array(napi_env env, napi_value v) {
  bool yes = false;
  return napi_is_array(env, v, &yes) == napi_ok && yes;
}

static inline napi_value js_int(napi_env env, int32_t v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

static inline napi_value js_bool(napi_env env, bool v) {
  napi_value out;
  napi_get_boolean(env, v, &out);
  return out;
}

static inline napi_value js_null(napi_env env) {
  napi_value out;
  napi_get_null(env, &out);
  return out;
}

// [a, b] as a JS array of two numbers.
static inline napi_value int_pair(napi_env env, int a, int b) {
  napi_value out;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, js_int(env, a));
  napi_set_element(env, out, 1, js_int(env, b));
  return out;
}

// Runs execute(data) on a libuv pool thread, then complete(data) on the JS thread; callback is
// held (*ref) until complete hands it to finish_work. `name` shows in async_hooks.
static inline void queue_work(napi_env env, const char *name, napi_value callback, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_async_work *work, napi_ref *ref) {
  napi_value resource;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_reference(env, callback, 1, ref);
  napi_create_async_work(env, NULL, resource, execute, complete, data, work);
  napi_queue_async_work(env, *work);
}

// Calls the held callback with argv, then releases it and the work (the caller frees its data).
static inline void finish_work(napi_env env, napi_ref ref, napi_async_work work, size_t argc, napi_value *argv) {
  napi_value cb, global;
  napi_get_reference_value(env, ref, &cb);
  napi_get_global(env, &global);
  napi_call_function(env, global, cb, argc, argv, NULL);
  napi_delete_reference(env, ref);
  napi_delete_async_work(env, work);
}

// Runs fn(arg) on a fresh thread and waits for it; pthread_create's error, 0 when it ran. For
// work that changes the thread itself (namespaces, cwd): no pool thread is ever changed.
static inline int run_on_own_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, fn, arg);
  if (rc == 0) pthread_join(t, NULL);
  return rc;
}

// native_pty.c: terminals for `runc exec` with a tty.
napi_value open_pty(napi_env env, napi_callback_info info);
napi_value set_window_size(napi_env env, napi_callback_info info);
napi_value make_raw(napi_env env, napi_callback_info info);

// native_net.c: conmon's attach socket, TCP inside a network namespace, unix datagrams.
napi_value connect_seqpacket(napi_env env, napi_callback_info info);
napi_value connect_in_netns(napi_env env, napi_callback_info info);
napi_value send_datagram(napi_env env, napi_callback_info info);
napi_value bind_datagram(napi_env env, napi_callback_info info);
napi_value recv_datagram(napi_env env, napi_callback_info info);

// native_mount.c: mount(2), umount2(2), namespace pins, idmapped mounts, mknod(2), lsetxattr(2).
napi_value mount_fs(napi_env env, napi_callback_info info);
napi_value unmount_fs(napi_env env, napi_callback_info info);
napi_value make_node(napi_env env, napi_callback_info info);
napi_value set_xattr(napi_env env, napi_callback_info info);
napi_value pin_namespaces(napi_env env, napi_callback_info info);
napi_value pin_user_namespace(napi_env env, napi_callback_info info);
napi_value idmap_mount_js(napi_env env, napi_callback_info info);

// native_spawn.c: posix_spawn of helpers, their exit, signals through pidfds.
napi_value proc_start_time(napi_env env, napi_callback_info info);
napi_value signal_process(napi_env env, napi_callback_info info);
napi_value make_pipe(napi_env env, napi_callback_info info);
napi_value spawn_process(napi_env env, napi_callback_info info);
napi_value pidfd_signal(napi_env env, napi_callback_info info);

// native_watch.c: exit watches, a pidfd polled on the event loop.
napi_value watch_exit(napi_env env, napi_callback_info info);
napi_value cancel_exit_watch(napi_env env, napi_callback_info info);

// native_mem.c: malloc_trim.
napi_value trim_malloc(napi_env env, napi_callback_info info);

// native_read.c: batched reads of small kernel files, fd counts (the metrics RPCs).
napi_value count_fds(napi_env env, napi_callback_info info);

#endif
