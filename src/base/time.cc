#include <cinttypes>
#include <cstdio>
#include <random>
#include <thread>

#include "base/base.h"

namespace venture {
namespace {

// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool parse_digits(std::string_view s, std::size_t pos, std::size_t n, int64_t& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

std::string format_time(Time t) {
  const int64_t ms = to_unix_ms(t);
  int64_t days = ms / 86400000;
  int64_t rem = ms % 86400000;
  if (rem < 0) {
    rem += 86400000;
    days -= 1;
  }
  int64_t y = 0;
  unsigned m = 0;
  unsigned d = 0;
  civil_from_days(days, y, m, d);
  // Written by hand, not with snprintf: this runs for every event appended (hash and envelope).
  if (y < 0 || y > 9999) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d,
                  static_cast<int>(rem / 3600000), static_cast<int>(rem / 60000 % 60),
                  static_cast<int>(rem / 1000 % 60), static_cast<int>(rem % 1000));
    return buf;
  }
  std::string out(24, '\0');
  const auto put = [&out](std::size_t pos, int64_t value, std::size_t digits) {
    for (std::size_t i = digits; i > 0; --i) {
      out[pos + i - 1] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  };
  put(0, y, 4);
  out[4] = '-';
  put(5, m, 2);
  out[7] = '-';
  put(8, d, 2);
  out[10] = 'T';
  put(11, rem / 3600000, 2);
  out[13] = ':';
  put(14, rem / 60000 % 60, 2);
  out[16] = ':';
  put(17, rem / 1000 % 60, 2);
  out[19] = '.';
  put(20, rem % 1000, 3);
  out[23] = 'Z';
  return out;
}

Result<Time> parse_time(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fff]Z
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, frac = 0;
  bool ok = s.size() >= 20 && parse_digits(s, 0, 4, y) && s[4] == '-' &&
            parse_digits(s, 5, 2, mo) && s[7] == '-' && parse_digits(s, 8, 2, d) &&
            (s[10] == 'T' || s[10] == 't') && parse_digits(s, 11, 2, h) && s[13] == ':' &&
            parse_digits(s, 14, 2, mi) && s[16] == ':' && parse_digits(s, 17, 2, se);
  std::size_t pos = 19;
  if (ok && pos < s.size() && s[pos] == '.') {
    ok = parse_digits(s, pos + 1, 3, frac);
    pos += 4;
  }
  ok = ok && pos + 1 == s.size() && (s[pos] == 'Z' || s[pos] == 'z');
  ok = ok && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && se < 61;
  if (!ok) {
    return invalid_argument_error("not an RFC 3339 UTC time: '" + std::string(s.substr(0, 64)) +
                                  "'");
  }
  const int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return from_unix_ms(((days * 24 + h) * 60 + mi) * 60000 + se * 1000 + frac);
}

Result<Millis> parse_duration(std::string_view text) {
  std::size_t i = 0;
  int64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    n = n * 10 + (text[i] - '0');
    if (n > limits::kDurationMax.count()) {
      return invalid_argument_error("duration '" + std::string(text.substr(0, 32)) +
                                    "' is too long");
    }
    ++i;
  }
  const std::string_view unit = text.substr(i);
  int64_t scale = 0;
  if (i > 0) {
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60000;
    else if (unit == "h")
      scale = 3600000;
    else if (unit == "d")
      scale = 86400000;
  }
  if (scale == 0) {
    return invalid_argument_error("'" + std::string(text.substr(0, 32)) +
                                  "' is not a duration (use e.g. 250ms, 30s, 5m, 2h, 1d)");
  }
  if (n > limits::kDurationMax.count() / scale) {
    return invalid_argument_error("duration '" + std::string(text) +
                                  "' exceeds the maximum of 365d");
  }
  return Millis(n * scale);
}

std::string format_duration(Millis d) {
  const int64_t ms = d.count();
  if (ms != 0 && ms % 86400000 == 0) return std::to_string(ms / 86400000) + "d";
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

namespace base {

Time RealClock::now() {
  return std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
}

int64_t RealClock::monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Time ManualClock::now() {
  std::lock_guard lock(mu_);
  return now_;
}

int64_t ManualClock::monotonic_ns() {
  std::lock_guard lock(mu_);
  return to_unix_ms(now_) * 1000000;
}

void ManualClock::advance(Millis d) {
  std::lock_guard lock(mu_);
  now_ += d;
}

void ManualClock::set(Time t) {
  std::lock_guard lock(mu_);
  now_ = t;
}

uint64_t Random::uniform(uint64_t n) {
  VENTURE_CHECK(n > 0);
  // Lemire's nearly-divisionless method is overkill here; rejection keeps it unbiased.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = next();
  while (x >= limit) x = next();
  return x % n;
}

double Random::uniform_double() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

namespace {
uint64_t split_mix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

SeededRandom::SeededRandom(uint64_t seed) {
  for (uint64_t& s : s_) s = split_mix(seed);
}

uint64_t SeededRandom::next() {
  std::lock_guard lock(mu_);
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

namespace {
uint64_t entropy_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}
}  // namespace

RealRandom::RealRandom() : inner_(entropy_seed()) {}
uint64_t RealRandom::next() { return inner_.next(); }

std::string new_id(std::string_view prefix, Clock& clock, Random& random) {
  const auto ms = static_cast<uint64_t>(to_unix_ms(clock.now()));
  const uint64_t r1 = random.next();
  const uint64_t r2 = random.next();
  uint8_t b[16];
  for (int i = 0; i < 6; ++i) b[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<uint8_t>(0x70 | ((r1 >> 8) & 0x0f));
  b[7] = static_cast<uint8_t>(r1);
  b[8] = static_cast<uint8_t>(0x80 | ((r1 >> 16) & 0x3f));
  b[9] = static_cast<uint8_t>(r1 >> 24);
  for (int i = 0; i < 6; ++i) b[10 + i] = static_cast<uint8_t>(r2 >> (8 * i));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(prefix);
  out += '_';
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 15];
  }
  return out;
}

bool is_id(std::string_view text, std::string_view prefix) {
  if (text.size() != prefix.size() + 1 + 36) return false;
  if (text.substr(0, prefix.size()) != prefix || text[prefix.size()] != '_') return false;
  const std::string_view u = text.substr(prefix.size() + 1);
  for (std::size_t i = 0; i < u.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    const char c = u[i];
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace base
}  // namespace venture
