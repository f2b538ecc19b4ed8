# Third-party dependencies, all from Debian packages installed by scripts/bootstrap.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(Boost 1.81 REQUIRED COMPONENTS json system)
find_package(SQLite3 REQUIRED)
find_package(GTest REQUIRED)
find_package(yaml-cpp REQUIRED)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
# libjq 1.6 ships no pkg-config file.
find_path(JQ_INCLUDE_DIR jq.h REQUIRED)
find_library(JQ_LIBRARY jq REQUIRED)
find_library(ONIG_LIBRARY onig REQUIRED)
add_library(venture_jq INTERFACE)
target_include_directories(venture_jq SYSTEM INTERFACE ${JQ_INCLUDE_DIR})
target_link_libraries(venture_jq INTERFACE ${JQ_LIBRARY} ${ONIG_LIBRARY} m)
find_package(CLI11 REQUIRED)
# The server (#3): Beast/Asio are header-only; OpenSSL for optional TLS; prometheus-cpp core for
# metrics (served by Beast, not by prometheus-cpp's civetweb exposer); toml++ for venture.toml;
# libcurl for the CLI's HTTP client.
find_package(OpenSSL REQUIRED)
find_package(CURL REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED COMPONENTS core)
pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
# Cluster mode (#5): libpq for storage/postgres, the NATS C client (JetStream, KV) for bus/nats,
# hiredis for the API's shared rate limiter.
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
# The allocator of the `venture` binary (issue #6): jemalloc. The engine, the store's writer and
# the API hand small objects between threads all the time; glibc malloc cost ~20% of the server's
# CPU under load (docs/performance.md). Not under a sanitizer, which brings its own allocator.
if(NOT CMAKE_CXX_FLAGS MATCHES "-fsanitize=")
  find_library(JEMALLOC_LIBRARY NAMES jemalloc REQUIRED)
endif()
