// Sockets Node cannot make: SOCK_SEQPACKET to conmon's attach socket, a TCP connection made
// inside a pod's network namespace (port forward), and unix datagrams (systemd notification).
#include "native.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>

napi_value connect_seqpacket(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  size_t len = 0;
  if (!get_args(env, info, 1, argv) || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 ||
      len >= sizeof path - 1)
    return type_error(env, "connectSeqpacket(path) takes a socket path");
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
  return js_int(env, fd);
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

static void netns_connect_execute(napi_env env, void *data) {
  (void)env;
  struct netns_connect *c = data;
  int rc = run_on_own_thread(netns_connect_thread, c);
  if (rc != 0) c->err = rc, c->step = "pthread_create";
}

static void netns_connect_complete(napi_env env, napi_status status, void *data) {
  struct netns_connect *c = data;
  napi_value argv[2];
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
    argv[0] = js_null(env);
    argv[1] = js_int(env, c->fd);
  }
  finish_work(env, c->callback, c->work, 2, argv);
  free(c);
}

napi_value connect_in_netns(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  bool n_ok = get_args(env, info, 4, argv);
  struct netns_connect *c = calloc(1, sizeof *c);
  if (!c) return throw_errno(env, "calloc", ENOMEM);
  size_t len = 0;
  bool ipv6 = false;
  if (!n_ok || napi_get_value_string_utf8(env, argv[0], c->netns, sizeof c->netns, &len) != napi_ok || len == 0 ||
      len >= sizeof c->netns - 1 || !arg_int(env, argv[1], &c->port) || c->port < 1 || c->port > 65535 ||
      napi_get_value_bool(env, argv[2], &ipv6) != napi_ok || !is_function(env, argv[3])) {
    free(c);
    return type_error(env, "connectInNetns(netnsPath, port 1..65535, ipv6, callback)");
  }
  c->ipv6 = ipv6;
  c->fd = -1;
  queue_work(env, "berth.connectInNetns", argv[3], netns_connect_execute, netns_connect_complete, c, &c->work, &c->callback);
  return NULL;
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
napi_value send_datagram(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[sizeof ((struct sockaddr_un *)0)->sun_path + 1];
  char msg[4096];
  struct sockaddr_un addr;
  socklen_t len;
  if (!get_args(env, info, 2, argv) || !arg_string(env, argv[0], path, sizeof path) || !arg_string(env, argv[1], msg, sizeof msg) ||
      !unix_address(path, &addr, &len))
    return type_error(env, "sendDatagram(path, message) takes a unix socket path (under 108 bytes) and a message");
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

napi_value bind_datagram(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[sizeof ((struct sockaddr_un *)0)->sun_path + 1];
  struct sockaddr_un addr;
  socklen_t len;
  if (!get_args(env, info, 1, argv) || !arg_string(env, argv[0], path, sizeof path) || !unix_address(path, &addr, &len))
    return type_error(env, "bindDatagram(path) takes a unix socket path (under 108 bytes)");
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (bind(fd, (struct sockaddr *)&addr, len) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, path, err);
  }
  return js_int(env, fd);
}

napi_value recv_datagram(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !arg_int(env, argv[0], &fd)) return type_error(env, "recvDatagram(fd) takes an fd");
  char buf[4096];
  ssize_t n;
  do n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return js_null(env);
    return throw_errno(env, "recv", errno);
  }
  napi_value out;
  napi_create_string_utf8(env, buf, (size_t)n, &out);
  return out;
}
