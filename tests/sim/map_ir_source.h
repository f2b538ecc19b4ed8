// An IrSource over an in-memory map, for tests that drive the pure engine core without a store:
// compile_definition compiles and remembers; find looks a version up. Shared by
// src/engine/core_test.cc and src/engine/property_test.cc.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "engine/engine.h"

namespace venture::sim {

class MapIrSource final : public engine::IrSource {
 public:
  std::shared_ptr<const workflow::Ir> find(const std::string& /*workflow*/,
                                           const std::string& version) override {
    auto it = irs_.find(version);
    return it == irs_.end() ? nullptr : it->second;
  }
  std::shared_ptr<const workflow::Ir> compile_definition(const json::value& def) override {
    workflow::Problems problems;
    auto ir = workflow::compile(def, problems);
    if (ir != nullptr) {
      irs_[ir->version] = ir;
    }
    return ir;
  }

 private:
  std::map<std::string, std::shared_ptr<const workflow::Ir>> irs_;
};

}  // namespace venture::sim
