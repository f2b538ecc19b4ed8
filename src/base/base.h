// base: the vocabulary every module shares.
//
// - Error / Result<T> / Status with canonical codes and VENTURE_RETURN_IF_ERROR & friends.
// - VENTURE_CHECK (always on; crashes on a broken invariant).
// - Time, ParseDuration, Clock (RealClock, ManualClock), Random (SeededRandom, RealRandom), NewId.
// - limits:: every named bound.
// - json:: (Boost.JSON) with bounded parsing and canonical serialization.
// - BLAKE2b, Merkle roots and Ed25519 (libsodium).
// - JSON-lines logging.
//
// This is the only header other modules include from base. Threading: everything here is
// thread-safe unless its comment says otherwise.
#pragma once

#include "base/check.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/result.h"
#include "base/time.h"

namespace venture {
// The release version, reported by `venture version`, /health and venture_build_info.
inline constexpr std::string_view kVersion = "0.2.0";
}  // namespace venture
