// Terminals for `runc exec` with a tty: a pty pair berthd holds the master of, its size and
// raw mode.
#include "native.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>

napi_value open_pty(napi_env env, napi_callback_info info) {
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

napi_value set_window_size(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd, rows, cols;
  if (!get_args(env, info, 3, argv) || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &rows) || !arg_int(env, argv[2], &cols) ||
      rows < 0 || cols < 0 || rows > 65535 || cols > 65535)
    return type_error(env, "setWindowSize(fd, rows, cols) takes three integers, rows and cols 0..65535");
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0) return throw_errno(env, "TIOCSWINSZ", errno);
  return NULL;
}

napi_value make_raw(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !arg_int(env, argv[0], &fd)) return type_error(env, "makeRaw(fd) takes an fd");
  struct termios t;
  if (tcgetattr(fd, &t) != 0) return throw_errno(env, "tcgetattr", errno);
  cfmakeraw(&t);
  if (tcsetattr(fd, TCSANOW, &t) != 0) return throw_errno(env, "tcsetattr", errno);
  return NULL;
}
