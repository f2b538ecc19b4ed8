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
void InitCrypto();

Hash Blake2b(std::string_view data);
Hash Blake2b(std::span<const uint8_t> a, std::string_view b);  // hash of a ‖ b
Hash Blake2bPair(const Hash& left, const Hash& right);         // Merkle inner node

std::string Hex(std::span<const uint8_t> bytes);
[[nodiscard]] Result<std::string> Unhex(std::string_view hex);
// "b2:" + hex, the printed form of a hash everywhere (versions, chain links).
std::string B2(const Hash& h);
[[nodiscard]] Result<Hash> ParseB2(std::string_view text);

// Merkle root over leaf hashes (pairwise Blake2bPair, an odd last node is promoted). The root of
// zero leaves is all zeros.
Hash MerkleRoot(std::span<const Hash> leaves);

struct SigningKey {
  std::array<uint8_t, 32> public_key{};
  std::array<uint8_t, 64> secret_key{};  // libsodium's seed ‖ public form
};

SigningKey NewSigningKey();
// 32-byte seed -> key (deterministic; for tests and keys stored as seeds).
SigningKey SigningKeyFromSeed(std::span<const uint8_t> seed32);
std::array<uint8_t, 64> Sign(const SigningKey& key, std::string_view message);
bool VerifySignature(std::span<const uint8_t> public_key, std::span<const uint8_t> signature,
                     std::string_view message);

// 32 random bytes from the OS, hex encoded (tokens, secrets).
std::string RandomSecretHex();

}  // namespace venture::base
