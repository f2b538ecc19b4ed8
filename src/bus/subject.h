// Subject and pattern syntax shared by the bus implementations (not part of the public API; other
// modules use bus.h). A subject is one or more non-empty dot-separated tokens without whitespace;
// a pattern may also use `*` as a whole token (exactly one token) and `>` as the last token (one
// or more tokens), as in NATS.
#pragma once

#include <string_view>

namespace venture::bus {

// True if `subject` can be published to: valid tokens, no wildcard tokens.
bool is_valid_subject(std::string_view subject);
// True if `pattern` can be subscribed to: valid tokens, `>` only as the last token.
bool is_valid_pattern(std::string_view pattern);

}  // namespace venture::bus
