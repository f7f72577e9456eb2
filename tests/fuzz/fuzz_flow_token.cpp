// libFuzzer target for the flow-token decoder, with a deterministic in-process MacOracle (no HSM).
#include <edge/hsm/mac.h>
#include <edge/net/token/base64url.h>
#include <edge/net/token/token.h>
#include <edge/net/token/token_codec.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

namespace {

using namespace edge;
using namespace edge::flow;

// Versions 1..3 verify, 4 is retired, the rest are unknown. Tags are SipHash
// based (the same derivation as tests/unit/net/token_test_oracle.h, so seed
// tokens made there verify here); no secret is involved, none is needed.
class FuzzOracle : public hsm::MacOracle {
 public:
  std::uint32_t minting_version() const override { return 3; }
  std::uint64_t epoch() const override { return 1; }
  hsm::MacStatus sign(std::uint32_t v, std::span<const std::uint8_t> data, hsm::MacTag& out) override {
    if (auto st = check(v); st != hsm::MacStatus::ok) return st;
    out = tag(v, data);
    return hsm::MacStatus::ok;
  }
  hsm::MacStatus verify(std::uint32_t v, std::span<const std::uint8_t> data,
                        std::span<const std::uint8_t> t) override {
    if (t.size() < 16 || t.size() > hsm::kMacSize) return hsm::MacStatus::bad_argument;
    if (auto st = check(v); st != hsm::MacStatus::ok) return st;
    const hsm::MacTag full = tag(v, data);
    return hsm::constant_time_equal({full.data(), t.size()}, t) ? hsm::MacStatus::ok
                                                                : hsm::MacStatus::mismatch;
  }
  static hsm::MacTag tag(std::uint32_t version, std::span<const std::uint8_t> data) {
    hsm::MacTag out{};
    for (std::uint64_t i = 0; i < 4; ++i) {
      const std::uint64_t h = siphash24({0x5eed0000ULL + version, i}, data);
      for (int b = 0; b < 8; ++b) out[i * 8 + b] = static_cast<std::uint8_t>(h >> (8 * b));
    }
    return out;
  }

 private:
  static hsm::MacStatus check(std::uint32_t v) {
    if (v >= 1 && v <= 3) return hsm::MacStatus::ok;
    if (v == 4) return hsm::MacStatus::retired_version;
    return hsm::MacStatus::unknown_version;
  }
};

TokenCodec& codec() {
  // A small cache so lookups, inserts and evictions are all exercised.
  static TokenCodec c(std::make_shared<FuzzOracle>(), {.verified_cache_capacity = 64});
  return c;
}

[[noreturn]] void fail() { std::abort(); }

void check_text(std::string_view text) {
  ParsedToken p;
  const ParseStatus ps = parse_token(text, p);
  const VerifyResult v = codec().verify(text);
  // The codec agrees with the parser and never calls junk valid.
  if (ps == ParseStatus::not_ours && v.status != TokenStatus::not_ours) fail();
  if (ps == ParseStatus::malformed && v.status != TokenStatus::malformed) fail();
  if (ps == ParseStatus::well_formed &&
      (v.status == TokenStatus::not_ours || v.status == TokenStatus::malformed)) {
    fail();
  }
  if (v.status == TokenStatus::hsm_unavailable) fail();  // this oracle is always there
  if (v.status == TokenStatus::valid) {
    if (v.key_version < 1 || v.key_version > 3) fail();
    // A valid text is canonical: re-encoding what it says gives it back.
    std::array<std::uint8_t, kMaxRawSize> raw{};
    std::size_t n = 0;
    if (encode_signed_part(v.flow, v.key_version, raw, n) != EncodeStatus::ok) fail();
    const TokenText again = finish_token(raw, n, FuzzOracle::tag(v.key_version, {raw.data(), n}));
    if (again.view() != text) fail();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // 1. The input as a presented token text.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_text(text);

  // 2. The input as the raw bytes of a token: given a valid MAC, so the fuzzer
  //    reaches the structure checks and the valid path instead of stopping at
  //    the tag. Whatever parses well-formed must then verify and round-trip.
  if (size > 0 && size <= kMaxRawSize) {
    std::array<std::uint8_t, kMaxRawSize> raw{};
    std::copy(data, data + size, raw.begin());
    const std::size_t signed_size = size > kTagSize ? size - kTagSize : size;
    std::uint32_t version = 0;
    if (signed_size >= 5) {
      version = (std::uint32_t{raw[1]} << 24) | (std::uint32_t{raw[2]} << 16) | (std::uint32_t{raw[3]} << 8) |
                raw[4];
    }
    const auto tag = FuzzOracle::tag(version, {raw.data(), signed_size});
    std::copy_n(tag.begin(), kTagSize, raw.begin() + static_cast<std::ptrdiff_t>(signed_size));
    std::array<char, base64url_encoded_size(kMaxRawSize + kTagSize)> out{};
    const std::size_t len = base64url_encode({raw.data(), signed_size + kTagSize}, out);
    const std::string_view forged(out.data(), len);
    check_text(forged);
    ParsedToken p;
    if (parse_token(forged, p) == ParseStatus::well_formed && p.key_version >= 1 && p.key_version <= 3 &&
        !codec().verify(forged).valid()) {
      fail();
    }
  }

  // 3. base64url: whatever decodes re-encodes to the same text.
  std::array<std::uint8_t, 256> buf{};
  if (size <= 300) {
    const std::ptrdiff_t n = base64url_decode(text, buf);
    if (n >= 0) {
      std::array<char, 400> back{};
      const std::size_t m = base64url_encode({buf.data(), static_cast<std::size_t>(n)}, back);
      if (std::string_view(back.data(), m) != text) fail();
    }
  }
  return 0;
}
