// The HSM facade: module + token + login + session pool + recovery + key sets + MAC.
#pragma once

#include <edge/hsm/counters.h>
#include <edge/hsm/keyset.h>
#include <edge/hsm/mac.h>
#include <edge/hsm/secret.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace edge::hsm {

// Which token: by label, optionally narrowed by serial, or by an RFC 7512
// PKCS#11 URI ("pkcs11:token=edge-lab;serial=..."). Never by slot index.
struct TokenSelector {
  std::string label;
  std::string serial;  // empty = any
  std::string uri;     // when set, overrides label/serial
};

struct HsmConfig {
  std::string module_path;  // e.g. /usr/lib/softhsm/libsofthsm2.so
  TokenSelector token;
  PinSource pin;
  std::size_t max_sessions = 8;
  std::chrono::milliseconds checkout_timeout{2000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{30000};
};

enum class HsmState : std::uint8_t {
  available,
  unavailable,    // a fault happened; rebuilding with back-off
  pin_incorrect,  // login refused: not retried (no lockout)
};
const char* to_string(HsmState s) noexcept;

struct HsmStatus {
  HsmState state = HsmState::available;
  std::string last_error;  // "C_Sign failed: CKR_DEVICE_ERROR"; never a PIN
  std::string module_description, token_label, token_serial;
};

// Thread-safe. Construction loads the module, finds the token and logs in;
// it throws Pkcs11Error / HsmError when that fails.
class Hsm {
 public:
  explicit Hsm(HsmConfig config);
  ~Hsm();
  Hsm(const Hsm&) = delete;
  Hsm& operator=(const Hsm&) = delete;

  HsmStatus status() const;
  HsmState state() const;
  const OpCounters& counters() const noexcept;
  OpCounters& counters() noexcept;
  KeySetManager& keysets() noexcept;

  // A MacOracle bound to one key set. The view re-reads the set's versions from
  // the HSM on refresh() (called by management after a change).
  std::shared_ptr<class KeySetMac> mac_for(std::string_view key_set);

  // Implementation detail shared with KeySetManager and KeySetMac.
  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<KeySetManager> keysets_;
};

}  // namespace edge::hsm
