// SessionPool: bounded checkout/return of sessions, blocking with a timeout when all are out.
#include "session_pool.h"

#include <edge/hsm/error.h>

#include <utility>

namespace edge::hsm {

std::string Fault::message() const {
  if (!detail.empty()) return detail;
  if (timeout) return "HSM session pool exhausted";
  std::string s = fn ? fn : "PKCS#11 call";
  s += " failed: ";
  s += ckr_name(rv);
  return s;
}

SessionLease::SessionLease(SessionLease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      session_(std::move(other.session_)),
      gen_(other.gen_),
      discard_(other.discard_) {}

SessionLease& SessionLease::operator=(SessionLease&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = std::exchange(other.pool_, nullptr);
    session_ = std::move(other.session_);
    gen_ = other.gen_;
    discard_ = other.discard_;
  }
  return *this;
}

void SessionLease::release() noexcept {
  if (pool_ == nullptr) return;
  std::exchange(pool_, nullptr)->give_back(std::move(session_), gen_, discard_);
  discard_ = false;
}

SessionPool::SessionPool(std::size_t max_sessions, Opener opener, void* context)
    : max_(max_sessions == 0 ? 1 : max_sessions), opener_(opener), context_(context) {
  idle_.reserve(max_);
}

SessionPool::~SessionPool() {
  std::lock_guard lock(mu_);
  idle_.clear();  // closes them
}

SessionLease SessionPool::checkout(std::chrono::milliseconds timeout, bool fresh, Fault& fault) {
  std::chrono::steady_clock::time_point deadline{};  // computed only if we have to wait
  std::unique_lock lock(mu_);
  for (;;) {
    if (quiesced_) {
      // The module is being restarted: no call may go in now. A load-like
      // refusal (fail() leaves the state to the thread restarting it).
      lock.unlock();
      fault.timeout = true;
      fault.detail = "HSM module restarting";
      return SessionLease();
    }
    if (!idle_.empty() && !fresh) {
      SessionLease lease;
      lease.pool_ = this;
      lease.session_ = std::move(idle_.back());
      idle_.pop_back();
      lease.gen_ = generation_;
      return lease;
    }
    if (open_ < max_ || (fresh && !idle_.empty())) {
      Session retired;
      if (open_ >= max_) {
        // fresh requested at the limit: replace an idle session by a new one.
        retired = std::move(idle_.back());
        idle_.pop_back();
      } else {
        ++open_;
      }
      const std::uint64_t gen = generation_;
      lock.unlock();
      retired = Session();  // close outside the lock
      SessionLease lease;
      CK_RV rv = opener_(context_, lease.session_, fault);
      const bool failed = rv != CKR_OK || !lease.session_;
      // Close a half-opened session before its slot is given up: until then it
      // counts as open, so wait_drained() cannot let the module be finalized
      // under this C_CloseSession.
      if (failed) lease.session_ = Session();
      lock.lock();
      if (failed) {
        --open_;
        cv_.notify_all();
        lock.unlock();
        if (!fault) {
          fault.fn = "C_OpenSession";
          fault.rv = rv == CKR_OK ? CKR_GENERAL_ERROR : rv;
        }
        return SessionLease();
      }
      lease.pool_ = this;
      lease.gen_ = gen;
      return lease;
    }
    if (deadline == std::chrono::steady_clock::time_point{})
      deadline = std::chrono::steady_clock::now() + timeout;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= max_) {
      fault.timeout = true;
      return SessionLease();
    }
  }
}

void SessionPool::give_back(Session&& session, std::uint64_t gen, bool discard) noexcept {
  Session closing;
  {
    std::lock_guard lock(mu_);
    if (discard || gen != generation_ || !session) {
      closing = std::move(session);
      --open_;
      // Its slot is free for a new session, but the close below is still a
      // call into the module: wait_drained() waits for it.
      if (closing) ++closing_;
    } else {
      idle_.push_back(std::move(session));  // capacity reserved: no allocation
    }
  }
  cv_.notify_one();
  if (!closing) return;
  closing = Session();  // C_CloseSession, outside the lock
  {
    std::lock_guard lock(mu_);
    --closing_;
  }
  cv_.notify_all();
}

void SessionPool::reset() {
  std::vector<Session> closing;
  closing.reserve(max_);
  {
    std::lock_guard lock(mu_);
    ++generation_;
    open_ -= idle_.size();
    closing_ += idle_.size();
    closing.swap(idle_);  // idle_ gets the reserved, empty vector
  }
  cv_.notify_all();
  if (closing.empty()) return;
  const std::size_t n = closing.size();
  closing.clear();  // C_CloseSession for each, outside the lock
  {
    std::lock_guard lock(mu_);
    closing_ -= n;
  }
  cv_.notify_all();
}

bool SessionPool::wait_drained(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return open_ == idle_.size() && closing_ == 0; });
}

bool SessionPool::quiesce(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  quiesced_ = true;
  cv_.notify_all();  // waiting checkouts give up now
  if (cv_.wait_for(lock, timeout, [&] { return open_ == idle_.size() && closing_ == 0; }))
    return true;
  quiesced_ = false;
  lock.unlock();
  cv_.notify_all();
  return false;
}

void SessionPool::resume() {
  {
    std::lock_guard lock(mu_);
    quiesced_ = false;
  }
  cv_.notify_all();
}

std::uint64_t SessionPool::generation() const noexcept {
  std::lock_guard lock(mu_);
  return generation_;
}

std::size_t SessionPool::open_count() const {
  std::lock_guard lock(mu_);
  return open_;
}

std::size_t SessionPool::idle_count() const {
  std::lock_guard lock(mu_);
  return idle_.size();
}

}  // namespace edge::hsm
