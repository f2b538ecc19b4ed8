// NATS-style subject matching: `*` matches exactly one token, a final `>` one or more tokens.
#include "bus/subject.h"

#include "bus/bus.h"

namespace venture::bus {
namespace {

// Walks the dot-separated tokens of a subject without allocating. "" yields one empty token and
// "a." yields "a" then "", so empty tokens are visible to the validators.
class Tokens {
 public:
  explicit Tokens(std::string_view text) : rest_(text) {}

  bool has_next() const { return more_; }

  std::string_view next() {
    const std::size_t dot = rest_.find('.');
    if (dot == std::string_view::npos) {
      more_ = false;
      return rest_;
    }
    const std::string_view token = rest_.substr(0, dot);
    rest_.remove_prefix(dot + 1);
    return token;
  }

 private:
  std::string_view rest_;
  bool more_ = true;
};

bool is_valid_token(std::string_view token) {
  if (token.empty()) {
    return false;
  }
  for (const char c : token) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}

}  // namespace

bool is_valid_subject(std::string_view subject) {
  Tokens tokens(subject);
  while (tokens.has_next()) {
    const std::string_view token = tokens.next();
    if (!is_valid_token(token) || token == "*" || token == ">") {
      return false;
    }
  }
  return true;
}

bool is_valid_pattern(std::string_view pattern) {
  Tokens tokens(pattern);
  while (tokens.has_next()) {
    const std::string_view token = tokens.next();
    if (!is_valid_token(token)) {
      return false;
    }
    if (token == ">" && tokens.has_next()) {
      return false;
    }
  }
  return true;
}

namespace {

bool is_kv_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

}  // namespace

bool is_valid_kv_bucket(std::string_view bucket) {
  if (bucket.empty() || bucket.size() > kKvBucketBytesMax) {
    return false;
  }
  for (const char c : bucket) {
    if (!is_kv_char(c)) {
      return false;
    }
  }
  return true;
}

bool is_valid_kv_key(std::string_view key) {
  if (key.empty() || key.size() > kKvKeyBytesMax) {
    return false;
  }
  for (const char c : key) {
    if (!is_kv_char(c) && c != '=' && c != '.') {
      return false;
    }
  }
  return is_valid_subject(key);  // no empty token: no leading, trailing or double dot
}

bool subject_matches(std::string_view pattern, std::string_view subject) {
  if (!is_valid_pattern(pattern) || !is_valid_subject(subject)) {
    return false;
  }
  Tokens want(pattern);
  Tokens have(subject);
  while (want.has_next()) {
    const std::string_view token = want.next();
    if (token == ">") {
      return have.has_next();  // one or more remaining tokens
    }
    if (!have.has_next()) {
      return false;
    }
    const std::string_view actual = have.next();
    if (token != "*" && token != actual) {
      return false;
    }
  }
  return !have.has_next();
}

}  // namespace venture::bus
