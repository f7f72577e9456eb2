// Flow-token micro benchmarks: mint/verify through SoftHSM vs raw C_Sign and in-process OpenSSL
// HMAC.
//
// Goals (docs/performance.md): verify with a cache hit within 2x of one
// in-process HMAC-SHA256; mint within 10% of one raw SoftHSM C_SignInit+C_Sign.
// Compare the figures of one run side by side, not against another machine.
#include <benchmark/benchmark.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/net/token/token.h>
#include <edge/net/token/token_codec.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>

namespace {

using namespace edge;
using namespace edge::flow;

constexpr const char* kSet = "bench-flows";

FlowKey bench_flow(std::uint16_t rport = 40312) {
  return {Transport::tls, *Endpoint::parse("192.0.2.10", 5061), *Endpoint::parse("198.51.100.7", rport)};
}

// The signed part of the bench flow's token: what every MAC below is computed over.
std::array<std::uint8_t, kMaxRawSize> signed_part(std::size_t& n) {
  std::array<std::uint8_t, kMaxRawSize> raw{};
  encode_signed_part(bench_flow(), 1, raw, n);
  return raw;
}

// One SoftHSM token for the whole process (its directory and SOFTHSM2_CONF),
// but an Hsm per benchmark run: opened before the timed loop and closed after
// it, so benchmarks of other files can open their own tokens in between.
test::SoftHsmToken& bench_token() {
  static test::SoftHsmToken token;
  return token;
}

struct Env {
  Env() : hsm(bench_token().config()) {
    if (!hsm.keysets().exists(kSet)) hsm.keysets().create(kSet);
    mac = hsm.mac_for(kSet);
    mac->refresh();
    if (mac->minting_version() == 0) throw std::runtime_error("bench key set has no active version");
  }
  std::uint64_t hsm_ops() const {
    const auto s = hsm.counters().snapshot();
    return s.sign + s.verify;
  }
  hsm::Hsm hsm;
  std::shared_ptr<hsm::KeySetMac> mac;
};

void report_hsm_calls(benchmark::State& state, const Env& env, std::uint64_t before) {
  state.counters["hsm_calls_per_op"] = benchmark::Counter(static_cast<double>(env.hsm_ops() - before) /
                                                          static_cast<double>(state.iterations()));
}

// Reference: one in-process HMAC-SHA256 over the token's signed part, with a
// reused OpenSSL context (re-initialised with the same key each time).
void BM_Reference_OpenSslHmacSha256(benchmark::State& state) {
  std::size_t n = 0;
  const auto data = signed_part(n);
  std::array<unsigned char, 32> key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<unsigned char>(i);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(ctx, key.data(), key.size(), params) != 1) {
    state.SkipWithError("EVP_MAC_init failed");
  }
  std::array<unsigned char, 32> out{};
  for (auto _ : state) {
    std::size_t len = 0;
    EVP_MAC_init(ctx, nullptr, 0, nullptr);
    EVP_MAC_update(ctx, data.data(), n);
    EVP_MAC_final(ctx, out.data(), &len, out.size());
    benchmark::DoNotOptimize(out);
  }
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
}
BENCHMARK(BM_Reference_OpenSslHmacSha256);

// Reference: what one HMAC costs through plain PKCS#11 with the same token key
// (C_SignInit + C_Sign on one session, no pool, no counters).
void BM_Reference_SoftHsmRawSign(benchmark::State& state) {
  Env env;  // keeps the module initialised and the key set in place
  test::RawP11 p11(test::softhsm_module_path());
  const CK_SLOT_ID slot = p11.slot_by_label(bench_token().label());
  const CK_SESSION_HANDLE session = p11.open_session(slot, false);
  p11.login(session, bench_token().user_pin());
  const auto keys = p11.find_by_label(session, hsm::version_label(kSet, env.mac->minting_version()));
  if (keys.size() != 1) {
    state.SkipWithError("key not found");
    return;
  }
  std::size_t n = 0;
  auto data = signed_part(n);
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  std::array<CK_BYTE, 32> out{};
  for (auto _ : state) {
    CK_ULONG len = out.size();
    if (p11.f().C_SignInit(session, &mech, keys[0]) != CKR_OK ||
        p11.f().C_Sign(session, data.data(), n, out.data(), &len) != CKR_OK) {
      state.SkipWithError("C_Sign failed");
      break;
    }
    benchmark::DoNotOptimize(out);
  }
  p11.f().C_CloseSession(session);
}
BENCHMARK(BM_Reference_SoftHsmRawSign)->Unit(benchmark::kMicrosecond);

// A fresh token for a flow: one HSM sign through the pool plus encoding.
void BM_TokenMint(benchmark::State& state) {
  Env env;
  TokenCodec codec(env.mac);
  const FlowKey flow = bench_flow();
  const auto before = env.hsm_ops();
  for (auto _ : state) {
    MintResult m = codec.mint(flow);
    if (m.status != MintStatus::ok) {
      state.SkipWithError("mint failed");
      break;
    }
    benchmark::DoNotOptimize(m);
  }
  report_hsm_calls(state, env, before);
}
BENCHMARK(BM_TokenMint)->Unit(benchmark::kMicrosecond);

// The steady state of minting: the flow already holds its token.
void BM_FlowTokenGetSteadyState(benchmark::State& state) {
  Env env;
  TokenCodec codec(env.mac);
  FlowToken ft(bench_flow());
  (void)ft.get(codec);
  const auto before = env.hsm_ops();
  for (auto _ : state) {
    MintResult m = ft.get(codec);
    benchmark::DoNotOptimize(m);
  }
  report_hsm_calls(state, env, before);
}
BENCHMARK(BM_FlowTokenGetSteadyState);

// A token the cache does not hold: decode + one HSM verify.
void BM_TokenVerifyCacheMiss(benchmark::State& state) {
  Env env;
  TokenCodec minter(env.mac);
  const TokenText text = minter.mint(bench_flow()).token;
  TokenCodec codec(env.mac, {.verified_cache_capacity = 0});
  const auto before = env.hsm_ops();
  for (auto _ : state) {
    VerifyResult r = codec.verify(text.view());
    if (!r.valid()) {
      state.SkipWithError("verify failed");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  report_hsm_calls(state, env, before);
}
BENCHMARK(BM_TokenVerifyCacheMiss)->Unit(benchmark::kMicrosecond);

// A token verified before: decode + verified-cache hit, no HSM call.
void BM_TokenVerifyCacheHit(benchmark::State& state) {
  Env env;
  TokenCodec minter(env.mac);
  const TokenText text = minter.mint(bench_flow()).token;
  TokenCodec codec(env.mac);
  if (!codec.verify(text.view()).valid()) state.SkipWithError("first verify failed");
  const auto before = env.hsm_ops();
  for (auto _ : state) {
    VerifyResult r = codec.verify(text.view());
    benchmark::DoNotOptimize(r);
  }
  report_hsm_calls(state, env, before);
}
BENCHMARK(BM_TokenVerifyCacheHit);

// The token presented on its own flow: one constant-time compare.
void BM_TokenVerifyOwnFlow(benchmark::State& state) {
  Env env;
  TokenCodec codec(env.mac);
  FlowToken ft(bench_flow());
  const TokenText text = ft.get(codec).token;
  const auto before = env.hsm_ops();
  for (auto _ : state) {
    VerifyResult r = codec.verify(text.view(), &ft);
    benchmark::DoNotOptimize(r);
  }
  report_hsm_calls(state, env, before);
}
BENCHMARK(BM_TokenVerifyOwnFlow);

// Structure only (base64url decode and field checks), no oracle at all.
void BM_TokenParse(benchmark::State& state) {
  std::size_t n = 0;
  auto raw = signed_part(n);
  const hsm::MacTag tag{};  // parsing never looks at the tag's value
  const TokenText text = finish_token(raw, n, tag);
  ParsedToken p;
  for (auto _ : state) {
    benchmark::DoNotOptimize(parse_token(text.view(), p));
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_TokenParse);

}  // namespace
