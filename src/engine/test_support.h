// Shared by the engine's unit tests (core_test, approval_test): a fixed start time and the
// emitted event sequence as readable strings. Tests only.
#pragma once

#include <string>
#include <vector>

#include "engine/engine.h"

namespace venture::engine::testing {

inline const Time kT0 = from_unix_ms(1'800'000'000'000);

// "type" for run events, "type:node" for node events, in emission order.
inline std::vector<std::string> types(const Decision& d) {
  std::vector<std::string> out;
  for (const EventDraft& e : d.events) {
    out.push_back(e.node.empty() ? e.type : e.type + ":" + e.node);
  }
  return out;
}

}  // namespace venture::engine::testing
