// Fuzz target: the input is "<document>\n<ops>" (split at the first newline; without one, the
// whole input is the ops over an empty object). ApplyPatch must never crash and must leave its
// input untouched; every "path" of the ops is also resolved with ResolvePointer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "workflow/workflow.h"

namespace {

constexpr venture::base::ParseLimits kLimits{1 << 16, 64};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace json = venture::json;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  json::value doc = json::object();
  std::string_view ops_text = input;
  if (newline != std::string_view::npos) {
    venture::Result<json::value> parsed =
        venture::base::parse_json(input.substr(0, newline), kLimits);
    if (!parsed) {
      return 0;
    }
    doc = *parsed;
    ops_text = input.substr(newline + 1);
  }
  venture::Result<json::value> ops = venture::base::parse_json(ops_text, kLimits);
  if (!ops) {
    return 0;
  }
  const json::value before = doc;
  venture::Result<json::value> patched = venture::workflow::apply_patch(doc, *ops);
  if (doc != before) {
    __builtin_trap();  // ApplyPatch must work on a copy
  }
  if (const json::array* list = ops->if_array()) {
    for (const json::value& op : *list) {
      const json::object* o = op.if_object();
      const json::string* path = o != nullptr ? venture::base::find_string(*o, "path") : nullptr;
      if (path != nullptr) {
        (void)venture::workflow::resolve_pointer(patched ? *patched : doc, *path);
      }
    }
  }
  return 0;
}
