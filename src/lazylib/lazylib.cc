#include "lazylib/lazylib.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace venture::lazylib {

void* open(const char* soname, const char* package) {
  void* handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    std::fprintf(stderr, "venture: cannot load %s (%s); install the package %s\n", soname,
                 dlerror(), package);
    std::abort();
  }
  return handle;
}

void* symbol(void* handle, const char* soname, const char* name) {
  void* f = dlsym(handle, name);
  if (f == nullptr) {
    std::fprintf(stderr, "venture: %s has no symbol %s (too old a version?)\n", soname, name);
    std::abort();
  }
  return f;
}

}  // namespace venture::lazylib
