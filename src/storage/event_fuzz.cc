// Fuzz target: arbitrary bytes -> ParseJson -> EventFromJson. Whatever decodes must survive the
// round trip EventToJson -> EventFromJson unchanged, and hashing it must not crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "storage/storage.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace storage = venture::storage;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto json = venture::base::parse_json(text);
  if (!json) {
    return 0;
  }
  auto event = storage::event_from_json(*json);
  if (!event) {
    return 0;
  }
  auto again = storage::event_from_json(storage::event_to_json(*event));
  VENTURE_CHECK(again.has_value());
  VENTURE_CHECK(*again == *event);
  (void)storage::compute_event_hash(*event);
  return 0;
}
