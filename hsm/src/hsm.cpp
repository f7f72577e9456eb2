// Hsm: start-up (module, token, login), the availability state machine and its rebuild, status,
// self test.
#include "hsm_impl.h"
#include "keyset_store.h"
#include "softhsm_env.h"

#include <edge/hsm/object.h>
#include <edge/hsm/slot.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace edge::hsm {

namespace {

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool user_state(CK_STATE s) noexcept { return s == CKS_RO_USER_FUNCTIONS || s == CKS_RW_USER_FUNCTIONS; }

// Exports SOFTHSM2_CONF before the module is loaded; returns the module path.
const std::string& prepare_environment(const HsmConfig& config) {
  if (config.module_path.empty()) throw HsmError("HSM configuration: no PKCS#11 module path");
  if (!config.softhsm2_conf.empty()) detail::export_softhsm2_conf(config.module_path, config.softhsm2_conf);
  return config.module_path;
}

}  // namespace

const char* to_string(HsmState s) noexcept {
  switch (s) {
    case HsmState::available:
      return "available";
    case HsmState::unavailable:
      return "unavailable";
    case HsmState::pin_incorrect:
      return "pin_incorrect";
  }
  return "?";
}

Recovery classify(CK_RV rv) noexcept {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
      return Recovery::reopen_session;
    case CKR_USER_NOT_LOGGED_IN:
      return Recovery::relogin;
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
      return Recovery::refind;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_ERROR:
    case CKR_GENERAL_ERROR:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    // The token is gone from its slot, or the slot itself is (slot ids change
    // when SoftHSM re-reads its token directory).
    case CKR_SLOT_ID_INVALID:
    case CKR_TOKEN_NOT_RECOGNIZED:
      return Recovery::unavailable;
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
      return Recovery::not_permitted;
    default:
      return is_pin_error(rv) ? Recovery::pin : Recovery::other;
  }
}

void throw_fault(const Fault& fault) {
  if (fault.rv != CKR_OK) {
    if (fault.fn != nullptr) throw Pkcs11Error(fault.fn, fault.rv);
    // The detail already reads "C_Xxx failed: CKR_..." (from a caught Pkcs11Error).
    throw HsmError(fault.message());
  }
  throw HsmError(fault.message());
}

// ---------------------------------------------------------------- Impl

Hsm::Impl::Impl(HsmConfig cfg)
    : config(std::move(cfg)),
      module(prepare_environment(config)),
      pool(config.max_sessions, &Impl::open_session_cb, this),
      backoff_(config.backoff_initial) {
  Slot slot = find_token_slot(module, config.token);
  slot_id.store(slot.id());
  refresh_token_info(slot);
  {
    ModuleInfo mi = module.info();
    std::lock_guard lock(status_mu_);
    module_description_ = mi.description + " " + std::to_string(mi.library_version.major) + "." +
                          std::to_string(mi.library_version.minor) + " (" + mi.manufacturer + ")";
  }
  // A PIN source that cannot deliver fails construction even when no login is
  // needed now (another instance in the process is logged in already): it
  // would fail the first re-login instead, much later.
  read_pin(config.pin).clear();
  // Open the anchor and the first pool session, which logs in now, so a wrong
  // PIN fails construction instead of the first message.
  Fault fault;
  SessionLease lease;
  if (open_anchor(fault) == CKR_OK) lease = pool.checkout(config.checkout_timeout, false, fault);
  if (!lease) {
    if (fault.rv != CKR_OK && fault.fn != nullptr) {
      std::string label;
      {
        std::lock_guard lock(status_mu_);
        label = token_label_;
      }
      throw Pkcs11Error(fault.fn, fault.rv,
                        "token '" + label + "'" + (fault.detail.empty() ? "" : ": " + fault.detail));
    }
    throw_fault(fault);
  }
  constructing_ = false;
  if (config.background_recovery) recovery_thread_ = std::thread([this] { recovery_loop(); });
}

Hsm::Impl::~Impl() {
  {
    std::lock_guard lock(recovery_mu_);
    recovery_stop_ = true;
  }
  recovery_cv_.notify_all();
  if (recovery_thread_.joinable()) recovery_thread_.join();
}

bool Hsm::Impl::may_recover_here() const noexcept {
  return !config.background_recovery || constructing_ ||
         std::this_thread::get_id() == recovery_thread_.get_id();
}

void Hsm::Impl::wake_recovery() {
  if (!config.background_recovery) return;
  {
    // Under the loop's mutex, so a state change between its check and its wait
    // is not missed.
    std::lock_guard lock(recovery_mu_);
  }
  recovery_cv_.notify_all();
}

void Hsm::Impl::recovery_loop() {
  std::unique_lock lock(recovery_mu_);
  while (!recovery_stop_) {
    if (state.load(std::memory_order_acquire) != HsmState::unavailable) {
      recovery_cv_.wait(lock);  // available, or a wrong PIN (never retried by itself)
      continue;
    }
    const std::int64_t wait_ns = retry_at_ns_.load(std::memory_order_acquire) - now_ns();
    if (wait_ns > 0) {
      recovery_cv_.wait_for(lock, std::chrono::nanoseconds(wait_ns));
      continue;
    }
    lock.unlock();
    {
      std::lock_guard rebuilding(rebuild_mu_);
      if (state.load(std::memory_order_acquire) == HsmState::unavailable &&
          now_ns() >= retry_at_ns_.load(std::memory_order_acquire)) {
        rebuild();
      }
    }
    lock.lock();
  }
}

void Hsm::Impl::refresh_token_info(const Slot& slot) {
  TokenInfo ti = slot.token_info();
  std::lock_guard lock(status_mu_);
  token_label_ = ti.label;
  token_serial_ = ti.serial;
}

CK_RV Hsm::Impl::open_session_cb(void* self, Session& out, Fault& fault) {
  return static_cast<Impl*>(self)->open_session(out, fault);
}

CK_RV Hsm::Impl::open_session(Session& out, Fault& fault) {
  counters.session_open.fetch_add(1, std::memory_order_relaxed);
  CK_RV rv = Session::open(module.functions(), slot_id.load(std::memory_order_acquire), true, out);
  if (rv != CKR_OK) {
    fault.fn = "C_OpenSession";
    fault.rv = rv;
    return rv;
  }
  // Login state belongs to the application and token: once one session is
  // logged in, new ones are too, and we log in only when it is lost (all
  // sessions closed, or after a rebuild).
  CK_SESSION_INFO info{};
  rv = out.try_info(info);
  if (rv != CKR_OK) {
    fault.fn = "C_GetSessionInfo";
    fault.rv = rv;
    out = Session();
    return rv;
  }
  if (user_state(info.state)) return CKR_OK;
  rv = login(out, fault);
  if (rv != CKR_OK) out = Session();
  return rv;
}

CK_RV Hsm::Impl::open_anchor(Fault& fault) {
  std::lock_guard lock(anchor_mu_);
  anchor_ = Session();
  counters.session_open.fetch_add(1, std::memory_order_relaxed);
  CK_RV rv = Session::open(module.functions(), slot_id.load(std::memory_order_acquire), false, anchor_);
  if (rv != CKR_OK) {
    fault.fn = "C_OpenSession";
    fault.rv = rv;
  }
  return rv;
}

CK_RV Hsm::Impl::login(Session& session, Fault& fault) {
  if (!may_recover_here()) {
    // Reading the PIN and C_Login belong to the recovery thread; the caller
    // answers unavailable and the fault wakes that thread.
    fault.fn = "C_Login";
    fault.rv = CKR_USER_NOT_LOGGED_IN;
    fault.detail = "login lost; left to the HSM recovery thread";
    // Whoever asked (a MAC call's retry, a session opened for the pool) answers
    // unavailable; this is what wakes the thread that logs in.
    mark_unavailable(fault.detail, false);
    return fault.rv;
  }
  std::lock_guard lock(login_mu_);
  // A login refused with a PIN error is remembered under this lock: a
  // concurrent re-login path that waited here does not spend a second attempt
  // with the same PIN (request_rebuild, the operator's action, forgets it).
  if (pin_refused_) {
    fault.fn = "C_Login";
    fault.rv = pin_refused_rv_;
    fault.detail = "not attempted again: an earlier C_Login with this PIN was refused (" +
                   std::string(ckr_name(pin_refused_rv_)) + ")";
    return fault.rv;
  }
  CK_RV unreadable = CKR_OK;
  if (std::string why = session.login_refusal(CKU_USER, &unreadable); !why.empty()) {
    if (unreadable != CKR_OK) {
      // The token did not answer (a device fault): not a PIN refusal, so the
      // recovery tries again after the back-off.
      fault.fn = "C_GetTokenInfo";
      fault.rv = unreadable;
      fault.detail = why;
      return fault.rv;
    }
    fault.fn = "C_Login";
    fault.rv = CKR_PIN_LOCKED;
    fault.detail = why;
    pin_refused_ = true;
    pin_refused_rv_ = CKR_PIN_LOCKED;
    return fault.rv;
  }
  // The PIN is read for this login and wiped when it returns: nothing holds it
  // between logins (a re-login after a rebuild reads the file again).
  SecretString pin;
  try {
    pin = read_pin(config.pin);
  } catch (const std::exception& e) {
    fault.detail = std::string("cannot log in: ") + e.what();
    return CKR_FUNCTION_FAILED;
  }
  counters.login.fetch_add(1, std::memory_order_relaxed);
  CK_RV rv = session.try_login(CKU_USER, pin);
  if (rv != CKR_OK) {
    fault.fn = "C_Login";
    fault.rv = rv;
    if (classify(rv) == Recovery::pin) {
      pin_refused_ = true;
      pin_refused_rv_ = rv;
    }
  } else {
    handle_epoch.fetch_add(1, std::memory_order_acq_rel);
  }
  return rv;
}

Fault Hsm::Impl::relogin(Session& session) {
  Fault fault;
  login(session, fault);
  return fault;
}

bool Hsm::Impl::enter() {
  HsmState s = state.load(std::memory_order_acquire);
  if (s == HsmState::available) return true;
  if (s == HsmState::pin_incorrect) return false;
  if (!may_recover_here()) return false;  // the recovery thread rebuilds, at the back-off deadline
  if (now_ns() < retry_at_ns_.load(std::memory_order_acquire)) return false;
  // One thread rebuilds; the others answer "unavailable" meanwhile instead of
  // queueing up behind a slow HSM.
  std::unique_lock lock(rebuild_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  s = state.load(std::memory_order_acquire);
  if (s != HsmState::unavailable) return s == HsmState::available;
  if (now_ns() < retry_at_ns_.load(std::memory_order_acquire)) return false;
  return rebuild();
}

bool Hsm::Impl::rebuild() {
  counters.recoveries.fetch_add(1, std::memory_order_relaxed);
  // Sessions of the old world are closed (idle) or closed when returned
  // (leased); the pool generation changes, so every cached key handle is
  // re-found on first use.
  pool.reset();
  {
    std::lock_guard lock(anchor_mu_);
    anchor_ = Session();
  }
  handle_epoch.fetch_add(1, std::memory_order_acq_rel);
  Fault fault;
  // Stage 0 re-finds the token and logs in again. When that fails for any
  // reason but the PIN, stage 1 restarts the module first (C_Finalize +
  // C_Initialize): SoftHSM keeps a token whose files went away broken
  // (CKR_GENERAL_ERROR) until it is initialized again.
  for (int stage = 0; stage < 2; ++stage) {
    // Never finalize a module somebody else in the process initialized (their
    // sessions would die), nor under a thread still inside a call: then the
    // stage 0 fault stands and the next attempt comes after the back-off.
    // quiesce() also keeps out a thread that passed enter() before the fault
    // (its checkout is refused until the restart is over).
    if (stage == 1 && (!module.initialized_by_us() || !pool.quiesce(config.checkout_timeout))) {
      break;
    }
    fault = Fault{};
    try {
      if (stage == 1) {
        struct Resume {
          SessionPool& quiesced;
          ~Resume() { quiesced.resume(); }
        } resume_after{pool};  // also when the restart throws
        {
          // Its handle would be stale (and maybe reused) after the restart.
          std::lock_guard lock(anchor_mu_);
          anchor_ = Session();
        }
        module.restart();
        pool.reset();
        handle_epoch.fetch_add(1, std::memory_order_acq_rel);
      }
      Slot slot = [&] {
        try {
          return find_token_slot(module, config.token);
        } catch (const Pkcs11Error& e) {
          // Somebody in the process called C_Finalize: initialize again (and own it).
          if (e.rv() != CKR_CRYPTOKI_NOT_INITIALIZED) throw;
          module.reinitialize();
          return find_token_slot(module, config.token);
        }
      }();
      // Slot ids are not stable (SoftHSM derives them from the token and
      // reassigns them): the token is found again by its selector.
      slot_id.store(slot.id(), std::memory_order_release);
      refresh_token_info(slot);
    } catch (const Pkcs11Error& e) {
      fault.rv = e.rv();
      fault.detail = e.what();
    } catch (const std::exception& e) {
      fault.detail = e.what();
    }
    if (!fault && open_anchor(fault) == CKR_OK) {
      SessionLease lease = pool.checkout(config.checkout_timeout, true, fault);
      // On success the lease goes back to the pool as its first idle session.
    }
    if (!fault) break;
    if (fault.timeout || (fault.rv != CKR_OK && classify(fault.rv) == Recovery::pin)) break;
  }
  if (fault) {
    counters.failures.fetch_add(1, std::memory_order_relaxed);
    if (fault.rv != CKR_OK && classify(fault.rv) == Recovery::pin) {
      set_pin_incorrect(fault.message());
    } else {
      mark_unavailable("rebuild failed: " + fault.message(), true);
    }
    return false;
  }
  std::string reason;
  {
    std::lock_guard lock(status_mu_);
    backoff_ = config.backoff_initial;
    reason = "recovered: token '" + token_label_ + "' serial " + token_serial_;
  }
  state.store(HsmState::available, std::memory_order_release);
  notify(HsmState::available, reason);
  return true;
}

void Hsm::Impl::fail(const Fault& fault, bool after_retry) {
  counters.failures.fetch_add(1, std::memory_order_relaxed);
  if (fault.timeout) return;  // load, not a fault of the HSM
  const Recovery r = fault.rv != CKR_OK
                         ? classify(fault.rv)
                         : Recovery::unavailable;  // e.g. the PIN file went away before a re-login
  if (r == Recovery::pin) {
    set_pin_incorrect(fault.message());
  } else if (r == Recovery::unavailable ||
             (after_retry && r != Recovery::other && r != Recovery::not_permitted)) {
    mark_unavailable(fault.message(), false);
  } else {
    std::lock_guard lock(status_mu_);
    last_error_ = fault.message();
  }
}

void Hsm::Impl::mark_unavailable(const std::string& reason, bool rebuild_failed) {
  bool transition = false;
  {
    std::lock_guard lock(status_mu_);
    last_error_ = reason;
    HsmState s = state.load(std::memory_order_acquire);
    if (s == HsmState::pin_incorrect) return;
    if (s == HsmState::available) {
      backoff_ = config.backoff_initial;
      transition = true;
    } else if (rebuild_failed) {
      backoff_ = std::min(backoff_ * 2, std::max(config.backoff_max, config.backoff_initial));
    } else {
      return;  // another in-flight call failed too: keep the running back-off
    }
    retry_at_ns_.store(now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(backoff_).count(),
                       std::memory_order_release);
    state.store(HsmState::unavailable, std::memory_order_release);
  }
  if (transition) notify(HsmState::unavailable, reason);
  wake_recovery();
}

void Hsm::Impl::set_pin_incorrect(const std::string& reason) {
  {
    std::lock_guard lock(status_mu_);
    last_error_ = reason;
    if (state.exchange(HsmState::pin_incorrect, std::memory_order_acq_rel) == HsmState::pin_incorrect) return;
  }
  notify(HsmState::pin_incorrect, reason);
}

void Hsm::Impl::notify(HsmState s, const std::string& reason) {
  if (!config.on_state_change) return;
  try {
    config.on_state_change(s, reason);
  } catch (...) {
    // A reporting hook must not break the MAC path.
  }
}

void Hsm::Impl::request_rebuild() {
  {
    std::lock_guard login_lock(login_mu_);
    pin_refused_ = false;  // the operator's action: one new attempt
  }
  std::lock_guard lock(status_mu_);
  if (state.load() == HsmState::available) return;
  backoff_ = config.backoff_initial;
  retry_at_ns_.store(0, std::memory_order_release);
  state.store(HsmState::unavailable, std::memory_order_release);
  wake_recovery();
}

std::string Hsm::Impl::unavailable_message() const {
  std::lock_guard lock(status_mu_);
  if (state.load() == HsmState::pin_incorrect) {
    return "HSM login refused and not retried (fix the PIN, then restart or request a rebuild): " +
           last_error_;
  }
  std::int64_t wait_ms = (retry_at_ns_.load() - now_ns()) / 1000000;
  if (wait_ms < 0) wait_ms = 0;
  return "HSM unavailable (next attempt in " + std::to_string(wait_ms) + " ms): " + last_error_;
}

HsmStatus Hsm::Impl::status() const {
  HsmStatus s;
  {
    std::lock_guard lock(status_mu_);
    s.state = state.load(std::memory_order_acquire);
    s.last_error = last_error_;
    s.module_description = module_description_;
    s.token_label = token_label_;
    s.token_serial = token_serial_;
    if (s.state == HsmState::unavailable) {
      std::int64_t ns = retry_at_ns_.load() - now_ns();
      s.retry_in = std::chrono::milliseconds(ns > 0 ? ns / 1000000 : 0);
    }
  }
  s.sessions_open = pool.open_count();
  s.sessions_idle = pool.idle_count();
  return s;
}

// ---------------------------------------------------------------- Hsm

Hsm::Hsm(HsmConfig config)
    : impl_(std::make_shared<Impl>(std::move(config))), keysets_(std::make_unique<KeySetManager>(*this)) {}

Hsm::~Hsm() = default;

HsmStatus Hsm::status() const { return impl_->status(); }
HsmState Hsm::state() const { return impl_->state.load(std::memory_order_acquire); }
const OpCounters& Hsm::counters() const noexcept { return impl_->counters; }
OpCounters& Hsm::counters() noexcept { return impl_->counters; }
KeySetManager& Hsm::keysets() noexcept { return *keysets_; }
void Hsm::request_rebuild() { impl_->request_rebuild(); }

SelfTestReport Hsm::self_test() {
  Impl& im = *impl_;
  SelfTestReport r;
  r.module_path = im.config.module_path;
  r.module = im.module.info();
  {
    Slot slot(im.module, im.slot_id.load());
    r.slot_id = slot.id();
    r.token = slot.token_info();
    r.mechanisms = slot.mechanisms();
    r.has_sha256_hmac =
        std::find(r.mechanisms.begin(), r.mechanisms.end(), CKM_SHA256_HMAC) != r.mechanisms.end();
    r.has_generic_secret_key_gen =
        std::find(r.mechanisms.begin(), r.mechanisms.end(), CKM_GENERIC_SECRET_KEY_GEN) != r.mechanisms.end();
    if (r.has_sha256_hmac) r.sha256_hmac_info = slot.mechanism_info(CKM_SHA256_HMAC);
  }
  if (!r.has_sha256_hmac || !r.has_generic_secret_key_gen) {
    r.round_trip_detail = "skipped: the token lacks CKM_SHA256_HMAC or CKM_GENERIC_SECRET_KEY_GEN";
    return r;
  }

  const auto start = std::chrono::steady_clock::now();
  try {
    r.round_trip_detail = im.with_session([&](Session& s) -> std::string {
      CK_FUNCTION_LIST* f = s.functions();
      AttributeTemplate t = mac_key_template(false, /*modifiable=*/false);
      t.add_string(CKA_LABEL, "edge-hsm selftest");
      im.counters.generate.fetch_add(1, std::memory_order_relaxed);
      UniqueObject key(s, generate_key(s, CKM_GENERIC_SECRET_KEY_GEN, t));

      static constexpr char kMessage[] = "edge-hsm selftest round trip";
      auto sign = [&](const char* msg, std::size_t len, MacTag& out) {
        CK_MECHANISM m{CKM_SHA256_HMAC, nullptr, 0};
        if (CK_RV rv = f->C_SignInit(s.handle(), &m, key.handle()); rv != CKR_OK)
          throw Pkcs11Error("C_SignInit", rv);
        CK_ULONG n = out.size();
        im.counters.sign.fetch_add(1, std::memory_order_relaxed);
        CK_RV rv =
            f->C_Sign(s.handle(), reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(msg)), len, out.data(), &n);
        if (rv != CKR_OK) throw Pkcs11Error("C_Sign", rv);
        if (n != out.size()) throw HsmError("C_Sign returned " + std::to_string(n) + " bytes, expected 32");
      };
      auto verify = [&](const char* msg, std::size_t len, MacTag& tag) {
        CK_MECHANISM m{CKM_SHA256_HMAC, nullptr, 0};
        if (CK_RV rv = f->C_VerifyInit(s.handle(), &m, key.handle()); rv != CKR_OK) {
          throw Pkcs11Error("C_VerifyInit", rv);
        }
        im.counters.verify.fetch_add(1, std::memory_order_relaxed);
        return f->C_Verify(s.handle(), reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(msg)), len, tag.data(),
                           tag.size());
      };

      MacTag a{}, b{};
      sign(kMessage, sizeof kMessage - 1, a);
      sign(kMessage, sizeof kMessage - 1, b);
      if (!constant_time_equal(a, b)) throw HsmError("two signatures of one message differ");
      if (CK_RV rv = verify(kMessage, sizeof kMessage - 1, a); rv != CKR_OK)
        throw Pkcs11Error("C_Verify", rv);
      static constexpr char kTampered[] = "edge-hsm selftest round trap";
      CK_RV rv = verify(kTampered, sizeof kTampered - 1, a);
      if (rv != CKR_SIGNATURE_INVALID) {
        throw HsmError(std::string("C_Verify of a modified message returned ") + ckr_name(rv) +
                       ", expected CKR_SIGNATURE_INVALID");
      }
      key.destroy();
      return "generated a session key, signed twice (same tag), C_Verify ok, modified message "
             "rejected, key destroyed";
    });
    r.round_trip_ok = true;
  } catch (const std::exception& e) {
    r.round_trip_detail = e.what();
  }
  r.round_trip_time =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return r;
}

}  // namespace edge::hsm
