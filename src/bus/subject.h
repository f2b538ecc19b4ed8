// Subject and pattern syntax shared by the bus implementations (not part of the public API; other
// modules use bus.h). A subject is one or more non-empty dot-separated tokens without whitespace;
// a pattern may also use `*` as a whole token (exactly one token) and `>` as the last token (one
// or more tokens), as in NATS.
#pragma once

#include <cstddef>
#include <string_view>

namespace venture::bus {

// Key-value bounds. TODO(#5): move to base/limits.h (bus/ may not edit base/).
// A key is a NATS subject under the bucket's prefix; a value is one NATS message (whose default
// max_payload is 1 MiB).
inline constexpr std::size_t kKvKeyBytesMax = 1024;
inline constexpr std::size_t kKvValueBytesMax = 512 << 10;
inline constexpr std::size_t kKvBucketBytesMax = 48;  // the NATS stream name adds "KV_venture_"

// True if `subject` can be published to: valid tokens, no wildcard tokens.
bool is_valid_subject(std::string_view subject);
// True if `pattern` can be subscribed to: valid tokens, `>` only as the last token.
bool is_valid_pattern(std::string_view pattern);
// KV bucket names: 1..kKvBucketBytesMax of [A-Za-z0-9_-].
bool is_valid_kv_bucket(std::string_view bucket);
// KV keys: 1..kKvKeyBytesMax of [A-Za-z0-9_-=.], no empty dot-separated token (NATS KV rules).
bool is_valid_kv_key(std::string_view key);

}  // namespace venture::bus
