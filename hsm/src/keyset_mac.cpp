// KeySetMac: per-message HMAC in the HSM with O(log n) version lookup, cached key handles and one-shot
// recovery.
#include <edge/hsm/keyset_mac.h>

#include "hsm_impl.h"
#include "keyset_store.h"

#include <edge/hsm/object.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

namespace edge::hsm {

namespace {

enum class EntryState : std::uint8_t {
  active,
  retired,  // retired in the HSM (seen at refresh, or the HSM refused the key)
  missing,  // not found in the HSM at the last look: re-looked-up on every use
};

// A cached key handle is only good in the handle epoch it was found in: the
// epoch changes at every rebuild (the module may have been restarted) and at
// every C_Login (SoftHSM drops the handles of private objects when the
// application logs out, e.g. when its last session closes). Epoch and handle
// live in one atomic word, so a reader never pairs a handle with the wrong
// epoch: epoch in the top 24 bits, handle in the low 40. Handles that do not
// fit are simply not cached.
constexpr int kHandleBits = 40;
constexpr std::uint64_t kHandleMask = (std::uint64_t{1} << kHandleBits) - 1;

std::uint64_t pack(std::uint64_t epoch, CK_OBJECT_HANDLE h) noexcept {
  if (static_cast<std::uint64_t>(h) > kHandleMask || h == CK_INVALID_HANDLE) return 0;
  return ((epoch & 0xFFFFFF) << kHandleBits) | static_cast<std::uint64_t>(h);
}

CK_OBJECT_HANDLE unpack(std::uint64_t cached, std::uint64_t epoch) noexcept {
  if (cached == 0 || (cached >> kHandleBits) != (epoch & 0xFFFFFF)) return CK_INVALID_HANDLE;
  return static_cast<CK_OBJECT_HANDLE>(cached & kHandleMask);
}

struct Entry {
  std::uint32_t version = 0;  // 0: not filled (never seen after refresh())
  std::atomic<EntryState> state{EntryState::active};
  std::atomic<std::uint64_t> cached{0};
  std::int64_t created = 0;
  std::string end_date;
  // The exact find template data of this version, built at refresh time so the
  // per-message re-find allocates nothing.
  std::vector<std::uint8_t> raw_id;
  std::string label;
  // An imported cell version (its signed record verified at refresh): the re-find
  // adopts an unwrapped key only when its HMAC over the check string is this.
  bool imported = false;
  std::array<std::uint8_t, 32> check_mac{};
};

// The versions present, sorted ascending, one entry each: memory follows the
// number of keys, not the version numbers (which may be anything up to 2^32-1).
// Lookup is a binary search: O(log n), no allocation, no lock.
struct View {
  std::uint32_t count = 0;  // entries[0 .. count-1], strictly ascending by version
  std::uint32_t retain = 0;
  std::unique_ptr<Entry[]> entries;
  std::vector<RefusedKey> refused;  // objects with this set's labels that were not adopted

  Entry* find(std::uint32_t version) const noexcept {
    std::uint32_t lo = 0, hi = count;
    while (lo < hi) {
      const std::uint32_t mid = lo + (hi - lo) / 2;
      if (entries[mid].version < version) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo == count || entries[lo].version != version || version == 0) return nullptr;
    return &entries[lo];
  }
};

bool user_state(CK_STATE s) noexcept { return s == CKS_RO_USER_FUNCTIONS || s == CKS_RW_USER_FUNCTIONS; }

}  // namespace

struct KeySetMac::State {
  std::shared_ptr<Hsm::Impl> impl;
  std::string name;
  std::atomic<std::shared_ptr<View>> view{std::make_shared<View>()};
  std::atomic<std::uint32_t> pinned{0};
  std::atomic<std::uint64_t> epoch{0};
  std::mutex refresh_mu;

  void bump_epoch() noexcept { epoch.fetch_add(1, std::memory_order_acq_rel); }
  MacStatus compute(std::uint32_t version, std::span<const std::uint8_t> data, std::uint8_t* out,
                    std::atomic<std::uint64_t>& counter);
};

namespace {

// One attempt: (re-)find the key if needed, then C_SignInit + C_Sign.
// Returns CKR_OK with `out` filled, or the failing CK_RV with `fn` set.
// `not_found` reports a key that is not (or no longer) in the HSM.
CK_RV attempt(Hsm::Impl& im, Entry& e, SessionLease& lease, std::span<const std::uint8_t> data,
              std::uint8_t* out, std::atomic<std::uint64_t>& counter, const char*& fn, bool& not_found) {
  Session& s = lease.session();
  CK_FUNCTION_LIST* f = s.functions();
  not_found = false;
  const std::uint64_t epoch = im.handle_epoch.load(std::memory_order_acquire);
  CK_OBJECT_HANDLE h = unpack(e.cached.load(std::memory_order_acquire), epoch);
  if (h == CK_INVALID_HANDLE) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_ID, e.raw_id.data(), static_cast<CK_ULONG>(e.raw_id.size())},
        {CKA_LABEL, e.label.data(), static_cast<CK_ULONG>(e.label.size())},
    };
    // More than one object may carry the label and ID: a key someone created with a
    // value they know next to ours. Only a key the HSM generated is used. (Whoever
    // plants more copies than this holds can hide ours; with the PIN they could as
    // well destroy it: a denial of service either way, never a forged key in use.)
    CK_OBJECT_HANDLE found[16];
    CK_ULONG n = 0;
    im.counters.find.fetch_add(1, std::memory_order_relaxed);
    if (CK_RV rv = find_objects_into(s, tmpl, 3, found, n, fn); rv != CKR_OK) return rv;
    CK_OBJECT_HANDLE genuine = CK_INVALID_HANDLE;
    bool retired_import = false;
    for (CK_ULONG i = 0; i < n && genuine == CK_INVALID_HANDLE; ++i) {
      const char* refusal = nullptr;
      fn = "C_GetAttributeValue";
      if (CK_RV rv = check_provenance(f, s.handle(), found[i], refusal); rv != CKR_OK) return rv;
      if (refusal == nullptr) {
        genuine = found[i];
      } else if (e.imported && refusal == kNotLocal) {
        // An imported cell version: the key whose MAC is the signed record's (the
        // record itself was verified at refresh). A key someone created with a value
        // they know next to it has another MAC and is skipped.
        fn = "C_Verify";
        const CK_RV rv = verify_imported_mac(f, s.handle(), found[i], e.check_mac.data());
        if (rv == CKR_OK) {
          genuine = found[i];
        } else if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED) {
          retired_import = true;
        } else if (rv != CKR_SIGNATURE_INVALID) {
          return rv;
        }
      }
    }
    if (genuine == CK_INVALID_HANDLE && retired_import) {
      // Retired in the HSM since the last refresh.
      fn = "C_VerifyInit";
      return CKR_KEY_FUNCTION_NOT_PERMITTED;
    }
    if (n > 0 && genuine == CK_INVALID_HANDLE) {
      // Only refused objects: this version does not verify; refresh() reports why.
      not_found = true;
      return CKR_OK;
    }
    if (n == 0) {
      // Private objects are invisible to a session that is not logged in:
      // that is a lost login, not a missing key.
      CK_SESSION_INFO info{};
      if (s.try_info(info) == CKR_OK && !user_state(info.state)) {
        fn = "C_FindObjects";
        return CKR_USER_NOT_LOGGED_IN;
      }
      // A token whose store went away also finds nothing (SoftHSM): that is
      // an unavailable HSM, not an unknown key.
      CK_TOKEN_INFO token{};
      fn = "C_GetTokenInfo";
      if (CK_RV rv = f->C_GetTokenInfo(im.slot_id.load(std::memory_order_acquire), &token); rv != CKR_OK)
        return rv;
      not_found = true;
      return CKR_OK;
    }
    h = genuine;
    e.cached.store(pack(epoch, h), std::memory_order_release);
  }

  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  fn = "C_SignInit";
  if (CK_RV rv = f->C_SignInit(s.handle(), &mech, h); rv != CKR_OK) return rv;
  // C_Sign wants a non-null, non-const pointer even for no data.
  static std::uint8_t empty_input = 0;
  CK_BYTE_PTR in = data.empty() ? &empty_input : const_cast<CK_BYTE_PTR>(data.data());
  CK_ULONG len = kMacSize;
  fn = "C_Sign";
  counter.fetch_add(1, std::memory_order_relaxed);
  CK_RV rv = f->C_Sign(s.handle(), in, static_cast<CK_ULONG>(data.size()), out, &len);
  if (rv == CKR_OK && len != kMacSize) return CKR_GENERAL_ERROR;  // not HMAC-SHA256
  return rv;
}

}  // namespace

MacStatus KeySetMac::State::compute(std::uint32_t version, std::span<const std::uint8_t> data,
                                    std::uint8_t* out, std::atomic<std::uint64_t>& counter) {
  const std::shared_ptr<View> v = view.load(std::memory_order_acquire);
  Entry* e = v->find(version);
  if (e == nullptr) return MacStatus::unknown_version;
  if (e->state.load(std::memory_order_acquire) == EntryState::retired) return MacStatus::retired_version;

  Hsm::Impl& im = *impl;
  if (!im.enter()) return MacStatus::unavailable;
  Fault fault;
  SessionLease lease = im.pool.checkout(im.config.checkout_timeout, false, fault);
  if (!lease) {
    im.fail(fault, false);
    return MacStatus::unavailable;
  }

  for (bool retried = false;; retried = true) {
    bool not_found = false;
    fault.fn = nullptr;
    CK_RV rv = attempt(im, *e, lease, data, out, counter, fault.fn, not_found);
    if (rv == CKR_OK && !not_found) {
      // A key that was missing (token directory away) is back.
      EntryState expected = EntryState::missing;
      e->state.compare_exchange_strong(expected, EntryState::active, std::memory_order_acq_rel);
      return MacStatus::ok;
    }
    if (not_found) {
      // Destroyed by a rotation elsewhere, or the token is in trouble: either
      // way this version does not verify now. Not cached as gone for good:
      // the next use looks again, refresh() drops it for real.
      if (e->state.exchange(EntryState::missing, std::memory_order_acq_rel) == EntryState::active)
        bump_epoch();
      return MacStatus::unknown_version;
    }
    fault.rv = rv;
    const Recovery r = classify(rv);
    if (r == Recovery::not_permitted) {
      // Retired in the HSM (by another process, or before our last refresh).
      if (e->state.exchange(EntryState::retired, std::memory_order_acq_rel) != EntryState::retired)
        bump_epoch();
      return MacStatus::retired_version;
    }
    if (retried || !retry_once(r)) {
      // An unknown error may leave a sign operation active on the session.
      if (r == Recovery::other || r == Recovery::unavailable) lease.discard();
      im.fail(fault, retried);
      return MacStatus::unavailable;
    }
    im.counters.recoveries.fetch_add(1, std::memory_order_relaxed);
    switch (r) {
      case Recovery::reopen_session: {
        lease.discard();
        lease.release();
        Fault again;
        lease = im.pool.checkout(im.config.checkout_timeout, true, again);
        if (!lease) {
          im.fail(again, true);
          return MacStatus::unavailable;
        }
        break;
      }
      case Recovery::relogin:
        if (Fault again = im.relogin(lease.session())) {
          im.fail(again, true);
          return MacStatus::unavailable;
        }
        break;
      case Recovery::refind:
        e->cached.store(0, std::memory_order_release);
        break;
      default:
        break;
    }
  }
}

// ------------------------------------------------------------ KeySetMac

KeySetMac::KeySetMac(std::shared_ptr<State> state) noexcept : s_(std::move(state)) {}
KeySetMac::~KeySetMac() = default;

const std::string& KeySetMac::key_set() const noexcept { return s_->name; }

void KeySetMac::refresh() {
  std::lock_guard lock(s_->refresh_mu);
  Hsm::Impl& im = *s_->impl;
  std::vector<std::pair<std::string, RefusedKey>> refused;
  std::vector<StoredKey> keys = im.with_session([&](Session& s) {
    refused.clear();
    return scan_keys(s, im, s_->name, &refused);
  });

  auto next = std::make_shared<View>();
  for (auto& r : refused) next->refused.push_back(std::move(r.second));
  if (!keys.empty()) {
    // keys are sorted by version: count the distinct ones.
    std::uint32_t distinct = 0;
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (i == 0 || keys[i].id.version != keys[i - 1].id.version) ++distinct;
    next->entries = std::make_unique<Entry[]>(distinct);
    next->retain = keys.back().id.retain;
  }
  const std::shared_ptr<View> prev = s_->view.load(std::memory_order_acquire);
  for (const StoredKey& k : keys) {
    // duplicate version: first wins, like to_info
    if (next->count > 0 && next->entries[next->count - 1].version == k.id.version) continue;
    Entry& e = next->entries[next->count++];
    e.version = k.id.version;
    e.state.store(k.retired ? EntryState::retired : EntryState::active, std::memory_order_relaxed);
    e.created = k.id.created;
    e.end_date = k.end_date;
    e.raw_id = k.raw_id;
    e.label = k.label;
    e.imported = !k.origin.empty();
    e.check_mac = k.check_mac;
    e.cached.store(0, std::memory_order_relaxed);
    // Keep the handle we already know for the very same object.
    if (Entry* old = prev->find(k.id.version); old != nullptr && old->raw_id == e.raw_id && !k.retired) {
      e.cached.store(old->cached.load(std::memory_order_acquire), std::memory_order_relaxed);
    }
  }

  // A version stops verifying when it was usable before and is now retired or gone.
  bool lost = false;
  for (std::uint32_t i = 0; i < prev->count && !lost; ++i) {
    const Entry& old = prev->entries[i];
    if (old.version == 0 || old.state.load(std::memory_order_acquire) == EntryState::retired) continue;
    const Entry* now = next->find(old.version);
    if (now == nullptr || now->raw_id != old.raw_id ||
        now->state.load(std::memory_order_relaxed) == EntryState::retired) {
      lost = true;
    }
  }
  s_->view.store(std::move(next), std::memory_order_release);
  if (lost) s_->bump_epoch();
}

void KeySetMac::set_minting_version(std::uint32_t version) {
  if (version != 0) {
    const std::shared_ptr<View> v = s_->view.load(std::memory_order_acquire);
    const Entry* e = v->find(version);
    if (e == nullptr) {
      const std::string why = refused_text(v->refused, version);
      throw HsmError("key set '" + s_->name + "' has no version " + std::to_string(version) +
                     (why.empty() ? std::string(" (refresh first?)") : why));
    }
    if (e->state.load(std::memory_order_acquire) != EntryState::active) {
      throw HsmError("key set '" + s_->name + "' version " + std::to_string(version) + " is not active");
    }
  }
  s_->pinned.store(version, std::memory_order_release);
}

std::uint32_t KeySetMac::pinned_version() const noexcept {
  return s_->pinned.load(std::memory_order_acquire);
}

std::uint32_t KeySetMac::minting_version() const {
  const std::shared_ptr<View> v = s_->view.load(std::memory_order_acquire);
  if (std::uint32_t p = s_->pinned.load(std::memory_order_acquire); p != 0) {
    if (const Entry* e = v->find(p);
        e != nullptr && e->state.load(std::memory_order_acquire) == EntryState::active) {
      return p;
    }
  }
  for (std::uint32_t i = v->count; i > 0; --i) {
    const Entry& e = v->entries[i - 1];
    if (e.version != 0 && e.state.load(std::memory_order_acquire) == EntryState::active) return e.version;
  }
  return 0;
}

std::uint64_t KeySetMac::epoch() const { return s_->epoch.load(std::memory_order_acquire); }

KeySetInfo KeySetMac::info() const {
  const std::shared_ptr<View> v = s_->view.load(std::memory_order_acquire);
  KeySetInfo info;
  info.name = s_->name;
  info.retain = v->retain;
  info.refused = v->refused;
  const std::uint32_t minting = minting_version();
  for (std::uint32_t i = 0; i < v->count; ++i) {
    const Entry& e = v->entries[i];
    if (e.version == 0) continue;
    const EntryState st = e.state.load(std::memory_order_acquire);
    if (st == EntryState::missing) continue;
    KeyVersionInfo k;
    k.version = e.version;
    k.state = st == EntryState::retired ? KeyState::retired : KeyState::active;
    k.created_unix = e.created;
    k.minting = e.version == minting;
    k.retired_on = st == EntryState::retired ? e.end_date : std::string();
    info.versions.push_back(std::move(k));
  }
  return info;
}

static_assert(static_cast<std::size_t>(MacStatus::bad_argument) + 1 == kMacResults,
              "the MAC result label covers every MacStatus");

MacStatus KeySetMac::sign(std::uint32_t version, std::span<const std::uint8_t> data, MacTag& out) {
  const auto start = std::chrono::steady_clock::now();
  const MacStatus st = s_->compute(version, data, out.data(), s_->impl->counters.sign);
  s_->impl->counters.mac_sign.record(static_cast<std::size_t>(st), std::chrono::steady_clock::now() - start);
  return st;
}

MacStatus KeySetMac::verify(std::uint32_t version, std::span<const std::uint8_t> data,
                            std::span<const std::uint8_t> tag) {
  if (tag.size() < 16 || tag.size() > kMacSize) {
    s_->impl->counters.mac_verify.record(static_cast<std::size_t>(MacStatus::bad_argument), {});
    return MacStatus::bad_argument;
  }
  MacTag expected;
  const auto start = std::chrono::steady_clock::now();
  MacStatus st = s_->compute(version, data, expected.data(), s_->impl->counters.verify);
  if (st == MacStatus::ok &&
      !constant_time_equal(std::span<const std::uint8_t>(expected.data(), tag.size()), tag))
    st = MacStatus::mismatch;
  s_->impl->counters.mac_verify.record(static_cast<std::size_t>(st),
                                       std::chrono::steady_clock::now() - start);
  return st;
}

// ------------------------------------------------------------ Hsm::mac_for

std::shared_ptr<KeySetMac> Hsm::mac_for(std::string_view key_set) {
  if (!valid_key_set_name(key_set)) {
    throw HsmError("invalid key set name: use 1..64 characters of A-Z a-z 0-9 . _ -");
  }
  auto state = std::make_shared<KeySetMac::State>();
  state->impl = impl_;
  state->name = std::string(key_set);
  auto mac = std::make_shared<KeySetMac>(std::move(state));
  mac->refresh();
  return mac;
}

}  // namespace edge::hsm
