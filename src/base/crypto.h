// libsodium wrappers: BLAKE2b-256 hashing, Ed25519 signing, random secrets, hex. Part of base.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace venture::base {

using Hash = std::array<uint8_t, 32>;

// Initialises libsodium once; safe to call many times from any thread.
void init_crypto();

Hash blake2b(std::string_view data);
Hash blake2b(std::span<const uint8_t> a, std::string_view b);  // hash of a ‖ b
Hash blake2b_pair(const Hash& left, const Hash& right);        // Merkle inner node
// Keyed BLAKE2b-256 (a MAC); the key is 16 to 64 bytes.
Hash blake2b_mac(std::span<const uint8_t> key, std::string_view message);
// Base64url without padding (RFC 4648 §5), for tokens in URLs.
std::string base64url(std::string_view bytes);
[[nodiscard]] Result<std::string> unbase64url(std::string_view text);
// Constant-time comparison of two secrets (MACs).
bool equal_secret(std::span<const uint8_t> a, std::span<const uint8_t> b);

std::string hex(std::span<const uint8_t> bytes);
[[nodiscard]] Result<std::string> unhex(std::string_view hex);
// "b2:" + hex, the printed form of a hash everywhere (versions, chain links).
std::string b2(const Hash& h);
[[nodiscard]] Result<Hash> parse_b2(std::string_view text);

// Merkle root over leaf hashes (pairwise Blake2bPair, an odd last node is promoted). The root of
// zero leaves is all zeros.
Hash merkle_root(std::span<const Hash> leaves);

struct SigningKey {
  std::array<uint8_t, 32> public_key{};
  std::array<uint8_t, 64> secret_key{};  // libsodium's seed ‖ public form
};

SigningKey new_signing_key();
// 32-byte seed -> key (deterministic; for tests and keys stored as seeds).
SigningKey signing_key_from_seed(std::span<const uint8_t> seed32);
std::array<uint8_t, 64> sign(const SigningKey& key, std::string_view message);
bool verify_signature(std::span<const uint8_t> public_key, std::span<const uint8_t> signature,
                      std::string_view message);

// 32 random bytes from the OS, hex encoded (tokens, secrets).
std::string random_secret_hex();

}  // namespace venture::base
