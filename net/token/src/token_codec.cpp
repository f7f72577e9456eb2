// Token codec: mint through the HSM, verify via the flow's own token, the verified cache, then the
// HSM.
#include <edge/net/token/token_codec.h>

#include <edge/hsm/mac.h>

#include <utility>

namespace edge::flow {

const char* to_string(MintStatus s) noexcept {
  switch (s) {
    case MintStatus::ok:
      return "ok";
    case MintStatus::invalid_flow:
      return "invalid_flow";
    case MintStatus::no_active_key:
      return "no_active_key";
    case MintStatus::hsm_unavailable:
      return "hsm_unavailable";
  }
  return "?";
}

const char* to_string(VerifySource s) noexcept {
  switch (s) {
    case VerifySource::none:
      return "none";
    case VerifySource::flow:
      return "flow";
    case VerifySource::cache:
      return "cache";
    case VerifySource::failed:
      return "failed";
    case VerifySource::hsm:
      return "hsm";
  }
  return "?";
}

namespace {

std::span<const std::uint8_t> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

// ---- FlowToken ----------------------------------------------------------

std::optional<MintResult> FlowToken::cached(TokenCodec& codec) const {
  hsm::MacOracle& oracle = codec.oracle();
  const std::uint32_t version = oracle.minting_version();
  const std::uint64_t epoch = oracle.epoch();
  std::lock_guard lock(mu_);
  // Re-mint on an epoch change too: the held version may be the one that
  // stopped verifying, and the oracle cannot say which one did.
  if (text_.empty() || version_ != version || epoch_ != epoch) return std::nullopt;
  MintResult r;
  r.status = MintStatus::ok;
  r.token = text_;
  r.key_version = version_;
  r.epoch = epoch_;
  return r;
}

MintResult FlowToken::get(TokenCodec& codec) {
  if (std::optional<MintResult> held = cached(codec)) return *held;
  // The HSM call runs without the lock; two threads racing here both mint and
  // the later store wins, both tokens being valid.
  MintResult r = codec.mint(flow_);
  if (r.status == MintStatus::ok) {
    std::lock_guard lock(mu_);
    text_ = r.token;
    version_ = r.key_version;
    epoch_ = r.epoch;
    mints_.fetch_add(1, std::memory_order_relaxed);
  }
  return r;
}

bool FlowToken::holds(std::string_view text, std::uint64_t epoch, std::uint32_t* key_version) const noexcept {
  std::lock_guard lock(mu_);
  // Sizes and epochs are not secret; only the bytes need a constant-time compare.
  if (text_.empty() || text.size() != text_.size || epoch != epoch_) return false;
  if (!hsm::constant_time_equal(as_bytes(text_.view()), as_bytes(text))) return false;
  if (key_version != nullptr) *key_version = version_;
  return true;
}

// ---- TokenCodec ---------------------------------------------------------

TokenCodec::TokenCodec(std::shared_ptr<hsm::MacOracle> oracle, const TokenCodecConfig& config)
    : oracle_(std::move(oracle)),
      config_(config),
      cache_(config.verified_cache_capacity, config.verified_cache_ttl),
      failed_(config.failed_cache_capacity, config.failed_cache_ttl),
      seen_epoch_(oracle_->epoch()) {}

std::uint64_t TokenCodec::current_epoch() noexcept {
  const std::uint64_t epoch = oracle_->epoch();
  std::uint64_t seen = seen_epoch_.load(std::memory_order_acquire);
  // The first thread to notice a new epoch drops the whole cache. Entries
  // still carry their own epoch, so one inserted by a verify that raced with
  // the change can never hit under the new epoch either.
  if (seen != epoch && seen_epoch_.compare_exchange_strong(seen, epoch)) {
    cache_.clear();
    failed_.clear();
    epoch_changes_.fetch_add(1, std::memory_order_relaxed);
  }
  return epoch;
}

MintResult TokenCodec::mint(const FlowKey& flow) {
  MintResult r;
  // Two attempts: a rotation or retirement may move the minting version
  // between reading it and signing with it.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const std::uint32_t version = oracle_->minting_version();
    if (version == 0) {
      r.status = MintStatus::no_active_key;
      break;
    }
    const std::uint64_t epoch = current_epoch();
    std::array<std::uint8_t, kMaxRawSize> raw{};
    std::size_t signed_size = 0;
    r.encode = encode_signed_part(flow, version, raw, signed_size);
    if (r.encode != EncodeStatus::ok) {
      r.status = MintStatus::invalid_flow;
      break;
    }
    hsm::MacTag tag{};
    mints_.fetch_add(1, std::memory_order_relaxed);
    const hsm::MacStatus ms = oracle_->sign(version, {raw.data(), signed_size}, tag);
    if (ms == hsm::MacStatus::ok) {
      r.status = MintStatus::ok;
      r.token = finish_token(raw, signed_size, tag);
      r.key_version = version;
      r.epoch = epoch;
      if (config_.cache_minted) {
        cache_.insert({raw.data(), signed_size + kTagSize}, epoch, flow, version);
      }
      return r;
    }
    if (ms == hsm::MacStatus::unknown_version || ms == hsm::MacStatus::retired_version) {
      r.status = MintStatus::no_active_key;
      continue;
    }
    r.status = MintStatus::hsm_unavailable;
    break;
  }
  mint_failures_.fetch_add(1, std::memory_order_relaxed);
  return r;
}

bool TokenCodec::decide_without_hsm(std::string_view text, const FlowToken* presented_on, std::uint64_t epoch,
                                    VerifyResult& r, ParsedToken& p) noexcept {
  // 1. The flow's own token: a byte compare, no decode, no HSM, no cache.
  if (presented_on != nullptr && presented_on->holds(text, epoch, &r.key_version)) {
    r.status = TokenStatus::valid;
    r.source = VerifySource::flow;
    r.flow = presented_on->flow();
    by_flow_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // 2. Structure, decided without the HSM so junk costs no HSM call.
  switch (parse_token(text, p)) {
    case ParseStatus::well_formed:
      break;
    case ParseStatus::not_ours:
      r.status = TokenStatus::not_ours;
      not_ours_.fetch_add(1, std::memory_order_relaxed);
      return true;
    case ParseStatus::malformed:
      r.status = TokenStatus::malformed;
      malformed_.fetch_add(1, std::memory_order_relaxed);
      return true;
  }
  r.key_version = p.key_version;

  // 3. Already verified under the current epoch, or refused a moment ago.
  if (cache_.lookup(p.bytes(), epoch, r.flow, r.key_version)) {
    r.status = TokenStatus::valid;
    r.source = VerifySource::cache;
    by_cache_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (failed_.contains(p.bytes(), epoch, FailedTokenCache::Clock::now())) {
    r.status = TokenStatus::tampered;
    r.source = VerifySource::failed;
    by_failed_.fetch_add(1, std::memory_order_relaxed);
    tampered_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

std::optional<VerifyResult> TokenCodec::verify_cached(std::string_view text,
                                                      const FlowToken* presented_on) noexcept {
  VerifyResult r;
  ParsedToken p;
  if (decide_without_hsm(text, presented_on, current_epoch(), r, p)) return r;
  return std::nullopt;
}

VerifyResult TokenCodec::verify(std::string_view text, const FlowToken* presented_on) noexcept {
  VerifyResult r;
  const std::uint64_t epoch = current_epoch();
  ParsedToken p;
  if (decide_without_hsm(text, presented_on, epoch, r, p)) return r;

  // 4. The HSM: the key version in the token selects the key.
  r.source = VerifySource::hsm;
  hsm_verifies_.fetch_add(1, std::memory_order_relaxed);
  r.mac = oracle_->verify(p.key_version, p.signed_part(), p.tag());
  switch (r.mac) {
    case hsm::MacStatus::ok:
      r.status = TokenStatus::valid;
      r.flow = p.flow;
      cache_.insert(p.bytes(), epoch, p.flow, p.key_version);
      return r;
    case hsm::MacStatus::unavailable:
      r.status = TokenStatus::hsm_unavailable;
      unavailable_.fetch_add(1, std::memory_order_relaxed);
      return r;
    case hsm::MacStatus::mismatch:
    case hsm::MacStatus::unknown_version:
    case hsm::MacStatus::retired_version:
    case hsm::MacStatus::bad_argument:  // cannot happen with a 16-byte tag; fail closed
      break;
  }
  if (r.mac == hsm::MacStatus::mismatch) failed_.insert(p.bytes(), epoch, FailedTokenCache::Clock::now());
  r.status = TokenStatus::tampered;
  tampered_.fetch_add(1, std::memory_order_relaxed);
  return r;
}

void TokenCodec::forget_key_version(std::uint32_t version) noexcept { cache_.forget_version(version); }

TokenCodecStats TokenCodec::stats() const noexcept {
  TokenCodecStats s;
  s.mints = mints_.load(std::memory_order_relaxed);
  s.mint_failures = mint_failures_.load(std::memory_order_relaxed);
  s.verified_by_flow = by_flow_.load(std::memory_order_relaxed);
  s.verified_by_cache = by_cache_.load(std::memory_order_relaxed);
  s.refused_by_failed_cache = by_failed_.load(std::memory_order_relaxed);
  s.hsm_verifies = hsm_verifies_.load(std::memory_order_relaxed);
  s.not_ours = not_ours_.load(std::memory_order_relaxed);
  s.malformed = malformed_.load(std::memory_order_relaxed);
  s.tampered = tampered_.load(std::memory_order_relaxed);
  s.unavailable = unavailable_.load(std::memory_order_relaxed);
  s.epoch_changes = epoch_changes_.load(std::memory_order_relaxed);
  s.cache = cache_.stats();
  s.failed_cache = failed_.stats();
  return s;
}

}  // namespace edge::flow
