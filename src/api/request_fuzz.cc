// Fuzz target: raw bytes through decode_raw_request, the server's own request decoding (Beast's
// parser with the default bounds, then target decoding and header lowering). It must never crash,
// hang or grow without bound, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const venture::api::ServerOptions kOptions;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = venture::api::decode_raw_request(bytes, kOptions);
  if (decoded) {
    // Touch the decoded fields so a bad decode shows under the sanitizers.
    volatile std::size_t n = decoded->path.size() + decoded->body.size() + decoded->query.size() +
                             decoded->headers.size();
    (void)n;
  }
  return 0;
}
