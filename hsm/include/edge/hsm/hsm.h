// The HSM facade: module + token + login + session pool + recovery + key sets + MAC.
#pragma once

#include <edge/hsm/counters.h>
#include <edge/hsm/keyset.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/hsm/mac.h>
#include <edge/hsm/secret.h>
#include <edge/hsm/selftest.h>
#include <edge/hsm/slot.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace edge::hsm {

enum class HsmState : std::uint8_t {
  available,
  unavailable,    // a fault happened; rebuilding with back-off
  pin_incorrect,  // login refused: not retried (no lockout)
};
const char* to_string(HsmState s) noexcept;

struct HsmConfig {
  std::string module_path;  // e.g. /usr/lib/softhsm/libsofthsm2.so
  TokenSelector token;
  PinSource pin;
  std::size_t max_sessions = 8;
  std::chrono::milliseconds checkout_timeout{2000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{30000};
  // When set, exported as SOFTHSM2_CONF before the module is loaded (lab and
  // test tokens). SoftHSM reads it once, at C_Initialize: if SoftHSM is
  // already initialized in this process with another value, construction fails.
  std::string softhsm2_conf;
  // Called on every state change (available -> unavailable -> available,
  // -> pin_incorrect) with the reason; never with a PIN. Runs on the thread
  // that saw the change, outside the library's locks; keep it short.
  std::function<void(HsmState, const std::string& reason)> on_state_change;
  // Where recovery runs. false: on the thread whose call found the fault (the
  // next call after the back-off rebuilds; a lost login is logged in again
  // inline). true: on a thread of the Hsm's own, never on a caller's: a
  // rebuild (module restart, token search, sessions, PIN read, C_Login) or a
  // lost login makes the calling operation answer unavailable at once, and
  // every operation until the recovery thread is done. For callers that must
  // not stall, such as SIP worker threads (edged sets it).
  bool background_recovery = false;
};

struct HsmStatus {
  HsmState state = HsmState::available;
  std::string last_error;  // "C_Sign failed: CKR_DEVICE_ERROR"; never a PIN
  std::string module_description, token_label, token_serial;
  std::size_t sessions_open = 0, sessions_idle = 0;
  // While unavailable: time until the next rebuild attempt.
  std::chrono::milliseconds retry_in{0};
};

// Thread-safe. Construction loads the module, finds the token and logs in;
// it throws Pkcs11Error / HsmError when that fails (a wrong PIN included).
//
// Faults after construction never throw out of the MAC path: they move the
// state to unavailable (MacStatus::unavailable, status().last_error) and,
// after the back-off deadline, a rebuild re-finds the slot by token, reopens
// sessions, logs in again and re-finds keys: on the next call, or on the
// Hsm's recovery thread when HsmConfig::background_recovery is set.
//
// May block (per operation): a session checkout waits up to
// HsmConfig::checkout_timeout when every session is lent out, and the PKCS#11
// call itself takes what the HSM takes (SoftHSM: ~20 us; a network HSM: ms).
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

  // A MacOracle bound to one key set, read from the HSM now (a set that does
  // not exist yet gives an empty view: every version is unknown until
  // refresh()). Each call returns a new, independent view; share the one you
  // configure. The view keeps the HSM's internals alive, so it may outlive
  // this object. Throws HsmError for an invalid name or an unavailable HSM.
  std::shared_ptr<KeySetMac> mac_for(std::string_view key_set);

  // Module and token information, mechanisms, and a sign/verify round trip
  // with a temporary session key (CKA_TOKEN=false, destroyed afterwards).
  SelfTestReport self_test();

  // Forgets the back-off (and a pin_incorrect state, e.g. after the operator
  // fixed the PIN file): the next call attempts a rebuild at once.
  void request_rebuild();

  // Implementation detail shared with KeySetManager and KeySetMac.
  struct Impl;
  Impl& impl() noexcept { return *impl_; }
  const std::shared_ptr<Impl>& shared_impl() const noexcept { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<KeySetManager> keysets_;
};

}  // namespace edge::hsm
