#include <sodium.h>

#include <vector>

#include "base/base.h"

namespace venture::base {

void init_crypto() {
  static const int kSodiumInit = sodium_init();
  VENTURE_CHECK_MSG(kSodiumInit >= 0, "libsodium failed to initialise");
}

Hash blake2b(std::string_view data) {
  Hash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(data.data()),
                     data.size(), nullptr, 0);
  return h;
}

Hash blake2b(std::span<const uint8_t> a, std::string_view b) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  crypto_generichash_update(&st, a.data(), a.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(b.data()), b.size());
  Hash h{};
  crypto_generichash_final(&st, h.data(), h.size());
  return h;
}

Hash blake2b_mac(std::span<const uint8_t> key, std::string_view message) {
  Hash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(message.data()),
                     message.size(), key.data(), key.size());
  return h;
}

std::string base64url(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

Result<std::string> unbase64url(std::string_view text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return invalid_argument_error("not base64url");
  }
  out.resize(len);
  return out;
}

bool equal_secret(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

Hash blake2b_pair(const Hash& left, const Hash& right) {
  // Domain-separated from leaves by a prefix byte so a leaf can never pose as an inner node.
  uint8_t buf[65];
  buf[0] = 1;
  std::copy(left.begin(), left.end(), buf + 1);
  std::copy(right.begin(), right.end(), buf + 33);
  Hash h{};
  crypto_generichash(h.data(), h.size(), buf, sizeof buf, nullptr, 0);
  return h;
}

std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Result<std::string> unhex(std::string_view hex) {
  if (hex.size() % 2 != 0) return invalid_argument_error("hex string of odd length");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return invalid_argument_error("not a hex string");
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string b2(const Hash& h) { return "b2:" + hex(h); }

Result<Hash> parse_b2(std::string_view text) {
  if (text.size() != 3 + 64 || text.substr(0, 3) != "b2:") {
    return invalid_argument_error("not a b2: hash");
  }
  VENTURE_ASSIGN_OR_RETURN(std::string raw, unhex(text.substr(3)));
  Hash h{};
  std::copy(raw.begin(), raw.end(), reinterpret_cast<char*>(h.data()));
  return h;
}

Hash merkle_root(std::span<const Hash> leaves) {
  if (leaves.empty()) return Hash{};
  std::vector<Hash> level(leaves.begin(), leaves.end());
  while (level.size() > 1) {
    std::vector<Hash> next;
    next.reserve((level.size() + 1) / 2);
    for (std::size_t i = 0; i < level.size(); i += 2) {
      next.push_back(i + 1 < level.size() ? blake2b_pair(level[i], level[i + 1]) : level[i]);
    }
    level = std::move(next);
  }
  return level[0];
}

SigningKey new_signing_key() {
  init_crypto();
  SigningKey k;
  crypto_sign_keypair(k.public_key.data(), k.secret_key.data());
  return k;
}

SigningKey signing_key_from_seed(std::span<const uint8_t> seed32) {
  init_crypto();
  VENTURE_CHECK(seed32.size() == crypto_sign_SEEDBYTES);
  SigningKey k;
  crypto_sign_seed_keypair(k.public_key.data(), k.secret_key.data(), seed32.data());
  return k;
}

std::array<uint8_t, 64> sign(const SigningKey& key, std::string_view message) {
  std::array<uint8_t, 64> sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), key.secret_key.data());
  return sig;
}

bool verify_signature(std::span<const uint8_t> public_key, std::span<const uint8_t> signature,
                      std::string_view message) {
  init_crypto();
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) {
    return false;
  }
  return crypto_sign_verify_detached(signature.data(),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), public_key.data()) == 0;
}

std::string random_secret_hex() {
  init_crypto();
  uint8_t buf[32];
  randombytes_buf(buf, sizeof buf);
  return hex(buf);
}

}  // namespace venture::base
