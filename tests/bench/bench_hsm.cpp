// HMAC-SHA256 of a 40-byte token body: raw SoftHSM vs our KeySetMac (session pool) vs in-process OpenSSL.
//
// Read side by side, in one run: BM_KeySetMacSign/threads:1 against BM_RawSoftHsmSign/threads:1
// is the cost of our layer (goal: at most 10% more); BM_OpenSslHmac shows what an HSM call
// costs compared with a key in process memory. Every benchmark makes its own SoftHSM token
// in a temporary directory (edge::test::SoftHsmToken), so they do not share state.
//
// On a shared 2-core machine compare medians of interleaved repetitions, and the CPU column
// as well as the real-time one:
//   build/bin/edge-microbench --benchmark_filter='BM_(RawSoftHsmSign|KeySetMac|OpenSslHmac)'
//     --benchmark_min_time=0.5 --benchmark_repetitions=12
//     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//   (one command line)
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <benchmark/benchmark.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <memory>
#include <stdexcept>
#include <vector>

namespace {

constexpr std::size_t kTokenBody = 40;  // what a v1 flow token MACs

// ---- raw PKCS#11: one C_SignInit + C_Sign per MAC with a token key ----------------------

struct RawSetup {
  edge::test::SoftHsmToken token;
  edge::test::RawP11 p11{edge::test::softhsm_module_path()};
  std::vector<CK_SESSION_HANDLE> sessions;  // one per benchmark thread
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;

  explicit RawSetup(int threads) {
    auto slot = p11.slot_by_label(token.label());
    for (int i = 0; i < threads; ++i) sessions.push_back(p11.open_session(slot, true));
    p11.login(sessions[0], token.user_pin());
    key = p11.generate_hmac_key(sessions[0], "bench/v1");
  }
  ~RawSetup() {
    for (auto s : sessions) p11.f().C_CloseSession(s);
  }
};

RawSetup* g_raw = nullptr;

void BM_RawSoftHsmSign(benchmark::State& state) {
  if (state.thread_index() == 0) g_raw = new RawSetup(state.threads());
  // The first StartKeepRunning is a barrier: every thread waits for the setup above.
  auto data = edge::test::sample_data(kTokenBody);
  unsigned char tag[32];
  bool setup_ok = true;
  for (auto _ : state) {
    const CK_SESSION_HANDLE s = g_raw->sessions[static_cast<std::size_t>(state.thread_index())];
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    CK_ULONG len = sizeof tag;
    if (g_raw->p11.f().C_SignInit(s, &mech, g_raw->key) != CKR_OK ||
        g_raw->p11.f().C_Sign(s, data.data(), data.size(), tag, &len) != CKR_OK) {
      setup_ok = false;
      break;
    }
    benchmark::DoNotOptimize(tag);
  }
  if (!setup_ok) state.SkipWithError("C_SignInit/C_Sign failed");
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete g_raw;
    g_raw = nullptr;
  }
}
BENCHMARK(BM_RawSoftHsmSign)->Threads(1)->Threads(2)->UseRealTime();

// ---- ours: KeySetMac through the session pool -------------------------------------------

struct OurSetup {
  edge::test::SoftHsmToken token;
  std::unique_ptr<edge::hsm::Hsm> hsm;
  std::shared_ptr<edge::hsm::KeySetMac> mac;
  edge::hsm::MacTag tag{};

  OurSetup() {
    auto config = token.config();
    config.max_sessions = 4;
    hsm = std::make_unique<edge::hsm::Hsm>(config);
    hsm->keysets().create("bench");
    mac = hsm->mac_for("bench");
    auto data = edge::test::sample_data(kTokenBody);
    if (mac->sign(1, data, tag) != edge::hsm::MacStatus::ok) throw std::runtime_error("warm-up sign failed");
  }
  ~OurSetup() {
    mac.reset();
    hsm.reset();
  }
};

OurSetup* g_ours = nullptr;

void BM_KeySetMacSign(benchmark::State& state) {
  if (state.thread_index() == 0) g_ours = new OurSetup();
  auto data = edge::test::sample_data(kTokenBody);
  edge::hsm::MacTag tag{};
  bool ok = true;
  for (auto _ : state) {
    if (g_ours->mac->sign(1, data, tag) != edge::hsm::MacStatus::ok) {
      ok = false;
      break;
    }
    benchmark::DoNotOptimize(tag);
  }
  if (!ok) state.SkipWithError("KeySetMac::sign failed");
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    auto c = g_ours->hsm->counters().snapshot();
    state.counters["hsm_calls_per_op"] =
        benchmark::Counter(static_cast<double>(c.sign), benchmark::Counter::kAvgIterations);
    delete g_ours;
    g_ours = nullptr;
  }
}
BENCHMARK(BM_KeySetMacSign)->Threads(1)->Threads(2)->UseRealTime();

void BM_KeySetMacVerify(benchmark::State& state) {
  if (state.thread_index() == 0) g_ours = new OurSetup();
  auto data = edge::test::sample_data(kTokenBody);
  bool ok = true;
  for (auto _ : state) {
    // A v1 token carries a 16-byte tag.
    if (g_ours->mac->verify(1, data, std::span<const std::uint8_t>(g_ours->tag.data(), 16)) !=
        edge::hsm::MacStatus::ok) {
      ok = false;
      break;
    }
  }
  if (!ok) state.SkipWithError("KeySetMac::verify failed");
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete g_ours;
    g_ours = nullptr;
  }
}
BENCHMARK(BM_KeySetMacVerify)->Threads(1)->Threads(2)->UseRealTime();

// ---- in-process OpenSSL HMAC-SHA256, context reused ------------------------------------

void BM_OpenSslHmac(benchmark::State& state) {
  unsigned char key[32];
  for (unsigned i = 0; i < sizeof key; ++i) key[i] = static_cast<unsigned char>(i * 7 + 3);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (!ctx || !EVP_MAC_init(ctx, key, sizeof key, params)) {
    state.SkipWithError("EVP_MAC setup failed");
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return;
  }
  auto data = edge::test::sample_data(kTokenBody);
  unsigned char tag[32];
  for (auto _ : state) {
    std::size_t len = 0;
    // Re-initialising with a null key reuses the key schedule already in the context.
    EVP_MAC_init(ctx, nullptr, 0, nullptr);
    EVP_MAC_update(ctx, data.data(), data.size());
    EVP_MAC_final(ctx, tag, &len, sizeof tag);
    benchmark::DoNotOptimize(tag);
  }
  state.SetItemsProcessed(state.iterations());
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
}
BENCHMARK(BM_OpenSslHmac);

}  // namespace
