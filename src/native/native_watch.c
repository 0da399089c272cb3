// Exit watches: a pidfd polled on berthd's own event loop. A pidfd turns readable once its
// process has exited (a zombie counts), so a death is reported when it happens, with nothing to
// check on every call and no pid that could be reused under it: the pidfd pins the process it
// was opened on. Runs on the JS thread only (the list below needs no lock).
#include "native.h"

#include <sys/syscall.h>
#include <uv.h>

struct exit_watch {
  uv_poll_t poll;
  int pidfd;
  int32_t id;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  struct exit_watch *next;
};

static struct exit_watch *watches;
static int32_t next_watch_id = 1;

static void watch_closed(uv_handle_t *h) {
  struct exit_watch *w = h->data;
  close(w->pidfd);
  free(w);
}

// Takes the watch off the list and the loop; its memory goes once libuv has closed the handle.
static void retire(struct exit_watch *w) {
  for (struct exit_watch **p = &watches; *p; p = &(*p)->next) {
    if (*p == w) {
      *p = w->next;
      break;
    }
  }
  uv_poll_stop(&w->poll);
  napi_delete_reference(w->env, w->cb);
  if (w->ctx) napi_async_destroy(w->env, w->ctx);
  uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void on_exit_ready(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  struct exit_watch *w = poll->data;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, result;
  napi_get_reference_value(env, w->cb, &cb);
  napi_get_global(env, &recv);
  // The callback's async context stays alive for the call; the watch is retired first, so a
  // cancel from inside the callback finds nothing.
  napi_async_context ctx = w->ctx;
  w->ctx = NULL;
  retire(w);
  if (napi_make_callback(env, ctx, recv, cb, 0, NULL, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_async_destroy(env, ctx);
  napi_close_handle_scope(env, scope);
}

// watchExit(pid, onExit) -> id | null: null when there is no such process.
napi_value watch_exit(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int pid = 0;
  if (!get_args(env, info, 2, argv) || !arg_int(env, argv[0], &pid) || pid <= 0 || !is_function(env, argv[1]))
    return type_error(env, "watchExit(pid > 0, onExit)");
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    if (errno == ESRCH) return js_null(env);
    return throw_errno(env, "pidfd_open", errno);
  }
  uv_loop_t *loop = NULL;
  struct exit_watch *w = calloc(1, sizeof *w);
  napi_value resource;
  napi_create_string_utf8(env, "berth.watchExit", NAPI_AUTO_LENGTH, &resource);
  if (!w || napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, argv[1], 1, &w->cb) != napi_ok) {
    close(pidfd);
    free(w);
    return throw_errno(env, "exit watch bookkeeping", ENOMEM);
  }
  napi_async_init(env, NULL, resource, &w->ctx);
  w->env = env;
  w->pidfd = pidfd;
  int rc = uv_poll_init(loop, &w->poll, pidfd);
  if (rc == 0) {
    w->poll.data = w;
    rc = uv_poll_start(&w->poll, UV_READABLE, on_exit_ready);
    if (rc != 0) {
      napi_delete_reference(env, w->cb);
      napi_async_destroy(env, w->ctx);
      uv_close((uv_handle_t *)&w->poll, watch_closed);
      return throw_errno(env, "uv_poll_start", -rc);
    }
  } else {
    napi_delete_reference(env, w->cb);
    napi_async_destroy(env, w->ctx);
    close(pidfd);
    free(w);
    return throw_errno(env, "uv_poll_init", -rc);
  }
  // A watch never keeps berthd running by itself.
  uv_unref((uv_handle_t *)&w->poll);
  w->id = next_watch_id++;
  if (next_watch_id <= 0) next_watch_id = 1;
  w->next = watches;
  watches = w;
  return js_int(env, w->id);
}

// cancelExitWatch(id) -> boolean: false when the watch had already fired or was cancelled.
napi_value cancel_exit_watch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int id = 0;
  if (!get_args(env, info, 1, argv) || !arg_int(env, argv[0], &id)) return type_error(env, "cancelExitWatch(id)");
  for (struct exit_watch *w = watches; w; w = w->next) {
    if (w->id == id) {
      retire(w);
      return js_bool(env, true);
    }
  }
  return js_bool(env, false);
}
