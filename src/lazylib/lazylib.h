// libcurl and libpq, loaded at their first use instead of at process start (issue #6): the two
// pull in LDAP, Kerberos, GnuTLS, RTMP, SSH and more (30 shared objects), which every `venture`
// invocation used to map and relocate before main(), `venture version` included. The API each
// user calls is the library's own (curl.h, libpq-fe.h); lazylib defines those functions in the
// binary and forwards each to the real one, resolved once with dlsym on first call.
#pragma once

namespace venture::lazylib {

// The handle of `soname` (dlopen, RTLD_NOW | RTLD_LOCAL), opened on the first call. A library
// that cannot be loaded is a broken installation: the process stops with a message naming it
// and the package that provides it.
void* open(const char* soname, const char* package);

// `symbol` of `handle`; a missing one stops the process with a message naming it.
void* symbol(void* handle, const char* soname, const char* symbol);

}  // namespace venture::lazylib
