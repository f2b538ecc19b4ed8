// The store and the bus a configuration names: the embedded pair (SQLite in the data dir, the
// in-process bus) or the cluster pair (PostgreSQL, NATS JetStream). Used by `venture serve` and
// `venture bench`, so both accept the same spellings.
#include "api/api.h"

namespace venture::api {

namespace {

bool has_scheme(std::string_view spec, std::initializer_list<std::string_view> schemes) {
  for (std::string_view s : schemes) {
    if (spec.starts_with(s)) return true;
  }
  return false;
}

}  // namespace

bool is_cluster_store(std::string_view spec) {
  return has_scheme(spec, {"postgres://", "postgresql://"});
}

Result<std::unique_ptr<storage::Store>> open_store(const std::string& spec,
                                                   const std::string& data_dir,
                                                   storage::Options options, base::Clock& clock,
                                                   base::Random& random) {
  if (spec == "sqlite") return storage::open_sqlite(data_dir, std::move(options), clock, random);
  if (spec == "memory") return storage::new_memory_store(std::move(options), clock, random);
  if (is_cluster_store(spec))
    return storage::open_postgres(spec, std::move(options), clock, random);
  return invalid_argument_error("store must be sqlite, memory or a postgres:// URL, not '" + spec +
                                "'");
}

Result<std::unique_ptr<bus::Bus>> open_bus(const std::string& spec, base::Clock& clock) {
  if (spec == "memory") return bus::new_memory_bus(clock);
  if (has_scheme(spec, {"nats://", "tls://"})) {
    bus::NatsOptions options;
    options.url = spec;
    return bus::new_nats_bus(options, clock);
  }
  return invalid_argument_error("bus must be memory or a nats:// URL, not '" + spec + "'");
}

}  // namespace venture::api
