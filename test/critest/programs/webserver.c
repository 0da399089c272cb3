/*
 * Stand-in for the nginx and httpd binaries of the images critest runs (see ../README.md).
 * Run as "nginx" it re-executes itself as "nginx: master process ..." (critest reads /proc/1/cmdline),
 * writes /var/run/nginx.pid and forks a "nginx: worker process" that answers HTTP 200 on the port
 * named by "listen N;" in /etc/nginx/conf.d/default.conf (80 without one).
 * Run as "httpd" it logs the Apache start-up lines (critest looks for "httpd -D FOREGROUND") and
 * answers HTTP 200 on port 80 itself.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MASTER "nginx: master process nginx -g daemon off;"
#define WORKER "nginx: worker process"
#define PID_FILE "/var/run/nginx.pid"
#define LISTEN_FD 3

static volatile sig_atomic_t stopping;
static pid_t worker;

static void on_stop(int sig) { (void)sig; stopping = 1; }

static int listen_port(void) {
  FILE *f = fopen("/etc/nginx/conf.d/default.conf", "r");
  char line[512];
  int port = 80;
  if (!f) return port;
  while (fgets(line, sizeof line, f)) {
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (strncmp(p, "listen", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
      port = atoi(p + 7);
      break;
    }
  }
  fclose(f);
  return port > 0 && port < 65536 ? port : 80;
}

static int open_listener(int port) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0), off = 0, on = 1;
  struct sockaddr_in6 addr;
  if (fd < 0) { perror("socket"); exit(1); }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  memset(&addr, 0, sizeof addr);
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  addr.sin6_port = htons(port);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0) {
    fprintf(stderr, "listen on port %d: %s\n", port, strerror(errno));
    exit(1);
  }
  return fd;
}

static const char *page(void) {
  static char body[4096];
  FILE *f = fopen("/usr/share/nginx/html/index.html", "r");
  size_t n = 0;
  if (f) { n = fread(body, 1, sizeof body - 1, f); fclose(f); }
  if (n == 0) n = (size_t)snprintf(body, sizeof body, "<html><body><h1>It works!</h1></body></html>\n");
  body[n] = 0;
  return body;
}

/* One request at a time is plenty for critest's GETs. */
static void serve(int fd) {
  const char *body = page();
  signal(SIGPIPE, SIG_IGN);
  while (!stopping) {
    char req[4096], head[256];
    size_t got = 0;
    int c = accept(fd, NULL, NULL);
    if (c < 0) { if (errno == EINTR) continue; perror("accept"); exit(1); }
    while (got < sizeof req - 1) {
      ssize_t n = read(c, req + got, sizeof req - 1 - got);
      if (n <= 0) break;
      got += (size_t)n;
      req[got] = 0;
      if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     strlen(body));
    if (write(c, head, (size_t)h) == h) (void)!write(c, body, strlen(body));
    close(c);
  }
}

static void self_path(char *out) {
  ssize_t n = readlink("/proc/self/exe", out, PATH_MAX - 1);
  if (n < 0) { perror("readlink /proc/self/exe"); exit(1); }
  out[n] = 0;
}

static int nginx_master(void) {
  char exe[PATH_MAX];
  struct sigaction sa;
  int fd = open_listener(listen_port());
  FILE *pid = fopen(PID_FILE, "w");
  if (!pid) { perror(PID_FILE); return 1; }
  fprintf(pid, "%d\n", (int)getpid());
  fclose(pid);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  self_path(exe);
  worker = fork();
  if (worker < 0) { perror("fork"); return 1; }
  if (worker == 0) {
    char *argv[] = {WORKER, NULL};
    if (fd != LISTEN_FD) { dup2(fd, LISTEN_FD); close(fd); }
    execv(exe, argv);
    perror("exec worker");
    _exit(1);
  }
  close(fd);
  for (;;) {
    int status;
    pid_t p = waitpid(-1, &status, 0);
    if (stopping) break;
    if (p == worker) { fprintf(stderr, "worker exited\n"); unlink(PID_FILE); return 1; }
    if (p < 0 && errno != EINTR) break;
  }
  kill(worker, SIGTERM);
  waitpid(worker, NULL, 0);
  unlink(PID_FILE);
  return 0;
}

static int httpd(int argc, char **argv) {
  struct sigaction sa;
  char cmd[512] = "httpd";
  for (int i = 1; i < argc; i++) {
    /* Apache prints "-DFOREGROUND" as "-D FOREGROUND". */
    if (strncmp(argv[i], "-D", 2) == 0 && argv[i][2]) snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " -D %s", argv[i] + 2);
    else snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", argv[i]);
  }
  int fd = open_listener(80);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGWINCH, &sa, NULL);
  fprintf(stderr, "[mpm_event:notice] [pid %d] AH00489: Apache/2.4.39 (Unix) configured -- resuming normal operations\n", (int)getpid());
  fprintf(stderr, "[core:notice] [pid %d] AH00094: Command line: '%s'\n", (int)getpid(), cmd);
  serve(fd);
  return 0;
}

int main(int argc, char **argv) {
  const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  if (strcmp(argv[0], WORKER) == 0) { serve(LISTEN_FD); return 0; }
  if (strcmp(argv[0], MASTER) == 0) return nginx_master();
  if (strcmp(name, "httpd") == 0) return httpd(argc, argv);
  if (strcmp(name, "nginx") == 0) {
    /* Re-exec so /proc/self/cmdline reads like nginx's; the kernel names the process after the file. */
    char exe[PATH_MAX];
    char *master[] = {MASTER, NULL};
    self_path(exe);
    execv(exe, master);
    perror("exec master");
    return 1;
  }
  fprintf(stderr, "run me as nginx or httpd\n");
  return 2;
}
