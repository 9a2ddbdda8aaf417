#pragma once
// FNV-1a, 64-bit (Fowler, Noll, Vo): hash = offset basis; for each byte b: hash = (hash ^ b) * prime.
// A fast, simple checksum for token shards, and a fingerprint for tokenizer model files and for the
// configs ranks compare at start. It detects corruption and accidental mix-ups, not tampering (it is
// not cryptographic).
#include <cstddef>
#include <cstdint>

namespace mgl {

constexpr uint64_t kFnv1aOffsetBasis = 14695981039346656037ull;
constexpr uint64_t kFnv1aPrime = 1099511628211ull;

// Continues a running hash over `size` more bytes (start with kFnv1aOffsetBasis).
inline uint64_t fnv1a64(const void* data, size_t size, uint64_t hash = kFnv1aOffsetBasis) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * kFnv1aPrime;
  return hash;
}

}  // namespace mgl
