/* Installed setuid root: with no_new_privs the kernel ignores the bit, so the printed uid tells which applied. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
  printf("Effective uid: %d\n", (int)geteuid());
  return 0;
}
