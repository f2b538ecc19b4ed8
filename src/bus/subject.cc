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

  bool HasNext() const { return more_; }

  std::string_view Next() {
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

bool IsValidToken(std::string_view token) {
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

bool IsValidSubject(std::string_view subject) {
  Tokens tokens(subject);
  while (tokens.HasNext()) {
    const std::string_view token = tokens.Next();
    if (!IsValidToken(token) || token == "*" || token == ">") {
      return false;
    }
  }
  return true;
}

bool IsValidPattern(std::string_view pattern) {
  Tokens tokens(pattern);
  while (tokens.HasNext()) {
    const std::string_view token = tokens.Next();
    if (!IsValidToken(token)) {
      return false;
    }
    if (token == ">" && tokens.HasNext()) {
      return false;
    }
  }
  return true;
}

bool SubjectMatches(std::string_view pattern, std::string_view subject) {
  if (!IsValidPattern(pattern) || !IsValidSubject(subject)) {
    return false;
  }
  Tokens want(pattern);
  Tokens have(subject);
  while (want.HasNext()) {
    const std::string_view token = want.Next();
    if (token == ">") {
      return have.HasNext();  // one or more remaining tokens
    }
    if (!have.HasNext()) {
      return false;
    }
    const std::string_view actual = have.Next();
    if (token != "*" && token != actual) {
      return false;
    }
  }
  return !have.HasNext();
}

}  // namespace venture::bus
