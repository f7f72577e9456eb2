// KeySetMac: the MacOracle of one key set, signing in the HSM through the session pool.
#pragma once

#include <edge/hsm/keyset.h>
#include <edge/hsm/mac.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace edge::hsm {

// A view of one key set's versions, O(log n) by version (stored sparsely:
// memory follows the number of keys, not the version numbers), with the key
// handles cached per version. sign/verify hold no lock except the session pool's
// checkout, allocate nothing in the steady state and never throw.
//
// The view changes only by refresh() (management, after rotate / retire /
// destroy) or when the HSM itself refuses a version (retired or destroyed by
// another process); both bump epoch() when a version stops verifying.
class KeySetMac final : public MacOracle {
 public:
  struct State;
  explicit KeySetMac(std::shared_ptr<State> state) noexcept;
  ~KeySetMac() override;
  KeySetMac(const KeySetMac&) = delete;
  KeySetMac& operator=(const KeySetMac&) = delete;

  const std::string& key_set() const noexcept;

  // Re-reads the set's versions from the HSM. Keeps cached handles of versions
  // that did not change. Adopts only keys the HSM generated itself (CKA_LOCAL,
  // CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE true); other objects with a version's
  // label and ID are listed in info().refused and never used, also when the
  // per-message path finds a key again. Throws HsmError / Pkcs11Error (management path).
  void refresh();

  // Pins the version new tokens are minted with; 0 = the newest active one.
  // Management pins the old version across a rotation and activates the new
  // one at apply time. Throws HsmError when `version` is not an active version
  // of this view. If a pinned version later stops being active, minting falls
  // back to the newest active version.
  void set_minting_version(std::uint32_t version);
  std::uint32_t pinned_version() const noexcept;

  // What this view currently believes (no HSM call).
  KeySetInfo info() const;

  std::uint32_t minting_version() const override;
  std::uint64_t epoch() const override;
  MacStatus sign(std::uint32_t version, std::span<const std::uint8_t> data, MacTag& out) override;
  // SoftHSM has no CKM_SHA256_HMAC_GENERAL: verify signs the data and compares
  // the first tag.size() bytes (16..32) in constant time.
  MacStatus verify(std::uint32_t version, std::span<const std::uint8_t> data,
                   std::span<const std::uint8_t> tag) override;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace edge::hsm
