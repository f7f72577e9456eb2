// Hsm::Impl: module, token, session pool, state machine and recovery policy (private).
#pragma once

#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/module.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "session_pool.h"

namespace edge::hsm {

// What a CK_RV asks of us.
enum class Recovery : std::uint8_t {
  reopen_session,  // CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED: new session, retry once
  relogin,         // CKR_USER_NOT_LOGGED_IN: C_Login, retry once
  refind,          // CKR_OBJECT_HANDLE_INVALID / CKR_KEY_HANDLE_INVALID: re-find the key, retry once
  unavailable,     // device / token gone or broken: back off, then rebuild
  pin,             // PIN refused at login: stop, never retry (no lockout)
  not_permitted,   // CKR_KEY_FUNCTION_NOT_PERMITTED: the key is retired in the HSM
  other,           // anything else: this operation failed, the HSM is fine
};
Recovery classify(CK_RV rv) noexcept;
inline bool retry_once(Recovery r) noexcept {
  return r == Recovery::reopen_session || r == Recovery::relogin || r == Recovery::refind;
}

// Throws the exception matching a fault (Pkcs11Error when there is a CK_RV).
[[noreturn]] void throw_fault(const Fault& fault);

struct Hsm::Impl {
  explicit Impl(HsmConfig cfg);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // The gate of every operation: true when the HSM is available, possibly
  // after this call rebuilt it (back-off deadline passed). Lock-free when
  // available.
  bool enter();

  // Records a failed call. after_retry: the one retry of a recoverable error
  // failed too, which makes it a fault of the HSM.
  void fail(const Fault& fault, bool after_retry);

  // Calls C_Login on this session (CKR_USER_NOT_LOGGED_IN recovery).
  Fault relogin(Session& session);

  // Management path: runs f(Session&) on a pooled session with the same
  // recovery policy as the MAC path, as exceptions. f must be safe to run twice.
  template <class F>
  std::invoke_result_t<F&, Session&> with_session(F&& f);

  std::string unavailable_message() const;
  HsmStatus status() const;
  void request_rebuild();

  HsmConfig config;
  Module module;
  OpCounters counters;
  SessionPool pool;
  std::atomic<CK_SLOT_ID> slot_id{0};
  std::atomic<HsmState> state{HsmState::available};
  // Changes when cached object handles may have become invalid: at every
  // rebuild and every C_Login. KeySetMac tags its cached handles with it.
  std::atomic<std::uint64_t> handle_epoch{1};
  // Imported cell keys accepted in one handle epoch (cell_keys.cpp, accept_imported):
  // (key handle, verify key handle, record bytes), so a refresh does not redo the
  // RSA verify and the MAC check of every version. Handles are good within an epoch.
  struct CellAcceptCache {
    std::mutex mu;
    std::uint64_t epoch = 0;
    std::vector<std::vector<std::uint8_t>> accepted;
  } cell_accept;

 private:
  static CK_RV open_session_cb(void* self, Session& out, Fault& fault);
  CK_RV open_session(Session& out, Fault& fault);
  CK_RV login(Session& session, Fault& fault);
  CK_RV open_anchor(Fault& fault);
  bool rebuild();
  void mark_unavailable(const std::string& reason, bool rebuild_failed);
  void set_pin_incorrect(const std::string& reason);
  void notify(HsmState s, const std::string& reason);
  void refresh_token_info(const class Slot& slot);

  std::atomic<std::int64_t> retry_at_ns_{0};
  mutable std::mutex status_mu_;
  std::string last_error_, module_description_, token_label_, token_serial_;
  std::chrono::milliseconds backoff_;
  std::mutex rebuild_mu_;
  std::mutex login_mu_;
  bool pin_refused_ = false;  // guarded by login_mu_
  CK_RV pin_refused_rv_ = CKR_OK;
  // A session that is never lent out: PKCS#11 logs the application out when
  // its last session closes (and SoftHSM then drops private object handles),
  // so dropping a broken pool session must not take the login with it.
  std::mutex anchor_mu_;
  Session anchor_;

  // HsmConfig::background_recovery: the thread that rebuilds, woken by a fault
  // (mark_unavailable, request_rebuild) and at each back-off deadline.
  void recovery_loop();
  void wake_recovery();
  bool may_recover_here() const noexcept;
  std::mutex recovery_mu_;
  std::condition_variable recovery_cv_;
  bool recovery_stop_ = false;
  bool constructing_ = true;
  std::thread recovery_thread_;
};

template <class F>
std::invoke_result_t<F&, Session&> Hsm::Impl::with_session(F&& f) {
  if (!enter()) throw HsmError(unavailable_message());
  Fault fault;
  SessionLease lease = pool.checkout(config.checkout_timeout, false, fault);
  if (!lease) {
    fail(fault, false);
    throw_fault(fault);
  }
  for (bool retried = false;; retried = true) {
    try {
      return f(lease.session());
    } catch (const Pkcs11Error& e) {
      const Recovery r = classify(e.rv());
      Fault seen;
      seen.rv = e.rv();
      seen.detail = e.what();
      if (retried || !retry_once(r)) {
        fail(seen, retried);
        throw;
      }
      counters.recoveries.fetch_add(1, std::memory_order_relaxed);
      if (r == Recovery::reopen_session) {
        lease.discard();
        lease.release();
        Fault again;
        lease = pool.checkout(config.checkout_timeout, true, again);
        if (!lease) {
          fail(again, true);
          throw_fault(again);
        }
      } else if (r == Recovery::relogin) {
        if (Fault again = relogin(lease.session())) {
          fail(again, true);
          throw_fault(again);
        }
      }
      // refind: f looks its objects up again on the retry.
    }
  }
}

}  // namespace edge::hsm
