// SessionPool: a bounded set of logged-in sessions handed to one thread at a time (private).
#pragma once

#include <edge/hsm/session.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace edge::hsm {

// What went wrong in a call that does not throw (the per-message path).
// Building the message allocates; only failures do that.
struct Fault {
  const char* fn = nullptr;  // PKCS#11 function that failed, when rv is set
  CK_RV rv = CKR_OK;
  std::string detail;    // a complete message when the fault is not (only) a CK_RV
  bool timeout = false;  // session pool exhausted

  explicit operator bool() const noexcept { return rv != CKR_OK || !detail.empty() || timeout; }
  std::string message() const;
};

class SessionPool;

// A session checked out of the pool; goes back on destruction.
class SessionLease {
 public:
  SessionLease() noexcept = default;
  ~SessionLease() { release(); }
  SessionLease(SessionLease&& other) noexcept;
  SessionLease& operator=(SessionLease&& other) noexcept;
  SessionLease(const SessionLease&) = delete;
  SessionLease& operator=(const SessionLease&) = delete;

  explicit operator bool() const noexcept { return pool_ != nullptr; }
  Session& session() noexcept { return session_; }
  // Pool generation the session belongs to; object handles cached with the
  // same generation are valid for it.
  std::uint64_t generation() const noexcept { return gen_; }
  // The session is broken (or may have an operation left active): close it
  // instead of handing it to the next thread.
  void discard() noexcept { discard_ = true; }
  void release() noexcept;

 private:
  friend class SessionPool;
  SessionPool* pool_ = nullptr;
  Session session_;
  std::uint64_t gen_ = 0;
  bool discard_ = false;
};

class SessionPool {
 public:
  // Opens one session and brings it to the logged-in state.
  using Opener = CK_RV (*)(void* context, Session& out, Fault& fault);

  SessionPool(std::size_t max_sessions, Opener opener, void* context);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // An idle session, or a new one while fewer than max are open, or waits up
  // to `timeout` for one to come back. fresh: never reuse an idle session
  // (after a session error). An empty lease and `fault` set on failure.
  SessionLease checkout(std::chrono::milliseconds timeout, bool fresh, Fault& fault);

  // Closes the idle sessions and marks the leased ones to be closed when they
  // come back; the generation changes, so cached object handles are re-found.
  void reset();

  // Waits until no session is checked out nor being closed (before the module
  // is restarted under them); false on timeout.
  bool wait_drained(std::chrono::milliseconds timeout);

  // Makes the caller the only one in the module through this pool: from now
  // on checkout() refuses at once (fault.timeout, "module restarting"), then
  // waits as wait_drained(). On true the caller may restart the module and
  // must call resume() afterwards; on false (timeout) the pool is resumed.
  // Costs checkout() one flag test under the lock it already takes.
  bool quiesce(std::chrono::milliseconds timeout);
  void resume();

  std::uint64_t generation() const noexcept;
  std::size_t open_count() const;
  std::size_t idle_count() const;

 private:
  friend class SessionLease;
  void give_back(Session&& session, std::uint64_t gen, bool discard) noexcept;

  const std::size_t max_;
  Opener opener_;
  void* context_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Session> idle_;  // capacity max_: push/pop never allocate
  std::size_t open_ = 0;       // idle + leased + being opened
  std::size_t closing_ = 0;    // no longer counted in open_, C_CloseSession in progress
  std::uint64_t generation_ = 1;
  bool quiesced_ = false;  // a module restart is under way: checkout() refuses
};

}  // namespace edge::hsm
