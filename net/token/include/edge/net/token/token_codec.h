// The flow-token codec: mints and verifies tokens through the HSM MacOracle, with caches.
#pragma once

#include <edge/hsm/mac.h>
#include <edge/net/token/failed_token_cache.h>
#include <edge/net/token/flow_key.h>
#include <edge/net/token/token.h>
#include <edge/net/token/verified_token_cache.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

namespace edge::flow {

class TokenCodec;

enum class MintStatus : std::uint8_t {
  ok,
  invalid_flow,     // the flow cannot be encoded (see EncodeStatus)
  no_active_key,    // the key set has no active version to mint with
  hsm_unavailable,  // the HSM could not sign now
};
const char* to_string(MintStatus s) noexcept;

struct MintResult {
  MintStatus status = MintStatus::hsm_unavailable;
  EncodeStatus encode = EncodeStatus::ok;  // why, when status == invalid_flow
  TokenText token;                         // set when status == ok
  std::uint32_t key_version = 0;           // version that minted it
  std::uint64_t epoch = 0;                 // MacOracle::epoch() seen before signing
};

// Which step decided a valid (or failed) verification; for counters and logs.
enum class VerifySource : std::uint8_t {
  none,    // decided without any lookup (not_ours / malformed)
  flow,    // equal to the presenting flow's own token
  cache,   // VerifiedTokenCache hit
  failed,  // FailedTokenCache hit: the HSM refused this very token a moment ago
  hsm,     // MacOracle::verify
};
const char* to_string(VerifySource s) noexcept;

struct VerifyResult {
  TokenStatus status = TokenStatus::not_ours;
  VerifySource source = VerifySource::none;
  hsm::MacStatus mac = hsm::MacStatus::ok;  // the oracle's answer when source == hsm
  std::uint32_t key_version = 0;            // set for valid / tampered / hsm_unavailable
  FlowKey flow;                             // set when valid

  bool valid() const noexcept { return status == TokenStatus::valid; }
};

// The token a flow hands out, minted once per flow per key version. The flow
// table keeps one per flow. Thread-safe (a small mutex, never held across an
// HSM call); neither copyable nor movable, so hold it inside the flow object.
class FlowToken {
 public:
  explicit FlowToken(const FlowKey& flow) : flow_(flow) {}
  FlowToken(const FlowToken&) = delete;
  FlowToken& operator=(const FlowToken&) = delete;

  const FlowKey& flow() const noexcept { return flow_; }

  // The flow's token under the codec's current minting version. Costs one HSM
  // sign the first time and whenever the minting version or the oracle epoch
  // changed since (after a rotation or retirement); otherwise no HSM call.
  // May block for that sign (see TokenCodec).
  MintResult get(TokenCodec& codec);

  // The held token when it is current (what get() returns without an HSM
  // call); nullopt when get() would have to mint. Never blocks on the HSM.
  std::optional<MintResult> cached(TokenCodec& codec) const;

  // True when `text` equals (constant time) the token this flow holds and no
  // key version stopped verifying since it was minted (epoch unchanged); then
  // sets *key_version (when given) to the version that minted it.
  bool holds(std::string_view text, std::uint64_t epoch, std::uint32_t* key_version = nullptr) const noexcept;

  // Number of times get() had to mint (tests and status).
  std::uint64_t mints() const noexcept { return mints_.load(std::memory_order_relaxed); }

 private:
  const FlowKey flow_;
  mutable std::mutex mu_;
  TokenText text_;
  std::uint32_t version_ = 0;
  std::uint64_t epoch_ = 0;
  std::atomic<std::uint64_t> mints_{0};
};

struct TokenCodecConfig {
  // Entries of the verified-token cache (about 130 bytes each, allocated up
  // front); 0 disables it.
  std::size_t verified_cache_capacity = 16384;
  // How long a verified (or minted) token is remembered at most; past it the
  // HSM verifies it again (VerifiedTokenCache). A fixed bound: no property.
  std::chrono::milliseconds verified_cache_ttl = VerifiedTokenCache::kDefaultTtl;
  // Put freshly minted tokens into the verified cache: a token minted here
  // (Path, Record-Route) comes back from the core on another connection, and
  // then verifies without an HSM call.
  bool cache_minted = true;
  // Tokens the HSM refused, remembered for failed_cache_ttl (FailedTokenCache,
  // 24 bytes an entry); 0 disables it.
  std::size_t failed_cache_capacity = 4096;
  std::chrono::milliseconds failed_cache_ttl{30'000};
};

struct TokenCodecStats {
  std::uint64_t mints = 0;  // HSM signs requested by mint()
  std::uint64_t mint_failures = 0;
  std::uint64_t verified_by_flow = 0;
  std::uint64_t verified_by_cache = 0;
  std::uint64_t refused_by_failed_cache = 0;  // tampered, decided by FailedTokenCache
  std::uint64_t hsm_verifies = 0;             // MacOracle::verify calls made
  std::uint64_t not_ours = 0, malformed = 0, tampered = 0, unavailable = 0;
  std::uint64_t epoch_changes = 0;  // times the verified cache was dropped
  VerifiedTokenCacheStats cache;
  FailedTokenCacheStats failed_cache;
};

// Mints and verifies flow tokens for one key set. Thread-safe; verify() and
// the cache-hit path never allocate.
//
// May block: mint(), FlowToken::get() when it has to mint, and verify() when
// neither the flow's own token nor the caches answer make one HSM call through
// the MacOracle (hsm::MacOracle says how long that may take). verify_cached()
// and FlowToken::cached() never block: an I/O thread calls those and hands
// what they leave open to an HsmWorkQueue (see edge::net::EdgeProxy).
class TokenCodec {
 public:
  explicit TokenCodec(std::shared_ptr<hsm::MacOracle> oracle, const TokenCodecConfig& config = {});
  TokenCodec(const TokenCodec&) = delete;
  TokenCodec& operator=(const TokenCodec&) = delete;

  // A new token for `flow` under the oracle's minting version (one HSM sign).
  // Prefer FlowToken::get(), which mints once per flow per key version.
  MintResult mint(const FlowKey& flow);

  // Decodes and authenticates a presented token (the user part of our Route
  // URI). When `presented_on` is the flow the request arrived on and the text
  // equals that flow's own token, it is valid with no HSM call and no cache
  // lookup; otherwise the verified cache, then the HSM, decide.
  VerifyResult verify(std::string_view text, const FlowToken* presented_on = nullptr) noexcept;

  // verify() without its HSM step: the answer when the flow's own token, the
  // structure check, the verified cache or the failed-token cache decides it;
  // nullopt when only the HSM can. Never blocks.
  std::optional<VerifyResult> verify_cached(std::string_view text,
                                            const FlowToken* presented_on = nullptr) noexcept;

  // Drops cached verifications of one key version at once (management may call
  // this on retirement; the epoch check would catch it on the next verify too).
  void forget_key_version(std::uint32_t version) noexcept;

  hsm::MacOracle& oracle() noexcept { return *oracle_; }
  const std::shared_ptr<hsm::MacOracle>& oracle_ptr() const noexcept { return oracle_; }
  VerifiedTokenCache& cache() noexcept { return cache_; }
  FailedTokenCache& failed_cache() noexcept { return failed_; }
  TokenCodecStats stats() const noexcept;

 private:
  std::uint64_t current_epoch() noexcept;
  // Steps 1-3 of verify: true when decided (r set); p is the parsed token then
  // needed by the HSM step.
  bool decide_without_hsm(std::string_view text, const FlowToken* presented_on, std::uint64_t epoch,
                          VerifyResult& r, ParsedToken& p) noexcept;

  std::shared_ptr<hsm::MacOracle> oracle_;
  TokenCodecConfig config_;
  VerifiedTokenCache cache_;
  FailedTokenCache failed_;
  std::atomic<std::uint64_t> seen_epoch_;
  std::atomic<std::uint64_t> mints_{0}, mint_failures_{0}, by_flow_{0}, by_cache_{0}, by_failed_{0},
      hsm_verifies_{0}, not_ours_{0}, malformed_{0}, tampered_{0}, unavailable_{0}, epoch_changes_{0};
};

}  // namespace edge::flow
