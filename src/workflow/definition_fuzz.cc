// Fuzz target: ParseDocument + Compile on arbitrary bytes must never crash, leak or hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "workflow/workflow.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  venture::workflow::Problems problems;
  venture::Result<venture::json::value> doc = venture::workflow::parse_document(text, problems);
  if (doc) {
    std::shared_ptr<const venture::workflow::Ir> ir = venture::workflow::compile(*doc, problems);
    // Every failure must explain itself; every success must carry a version.
    if (ir == nullptr && problems.empty()) {
      __builtin_trap();
    }
    if (ir != nullptr && ir->version.size() != 3 + 64) {
      __builtin_trap();
    }
  } else if (problems.empty()) {
    __builtin_trap();
  }
  return 0;
}
