// Memory: freed Buffers (a pull's socket and zlib chunks, child process output) go back to
// glibc's heap, which keeps the pages: after a burst they stay resident until reused.
#include "native.h"

#include <malloc.h>

// malloc_trim releases every free page of every arena. Returns whether any memory was released.
napi_value trim_malloc(napi_env env, napi_callback_info info) {
  (void)info;
  return js_bool(env, malloc_trim(0) == 1);
}
