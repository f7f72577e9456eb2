// FrontEndLink: the agent's one way into the FrontEnd, and the last status the front end reported.
//
// Owns: which FrontEnd is attached (the daemon owns the object) and a
// snapshot of its last FrontEnd::status().
//
// Locking: call_mu_ is held for every call into the front end, because
// FrontEnd promises its implementer one call at a time; a Session holds it
// across all the calls of one transition (validate, drain, apply, start,
// health, a restore), so nothing else reaches the front end between a drain
// and its start. The snapshot is an atomic shared_ptr to an immutable message
// and is read without call_mu_.
//
// Why status never waits: status() takes call_mu_ only with try_lock. When
// no call is in progress it asks the front end (flow and request counters
// move all the time, so a snapshot taken at the last apply would soon be
// stale) and keeps the answer; while a transition holds the lock it answers
// the snapshot, which the session refreshes after each step that changes the
// front end (drain, apply, start), so a status read during an apply shows the
// step the apply has reached. Waiting instead would make every watcher of the
// appliance (edgectl status, ListKeySets, monitoring) hang for the length of
// a drain plus an HSM round trip, and longer when the HSM is what is failing.
#pragma once

#include <edge/mgmt/front_end.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace edge::mgmt::agent_parts {

class FrontEndLink {
 public:
  // Exclusive use of the front end for one transition; releases it when destroyed.
  class Session {
   public:
    Session(Session&&) noexcept = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    Session& operator=(Session&&) = delete;
    ~Session() = default;

    // False when no front end is attached (then nothing may be called).
    explicit operator bool() const noexcept { return fe_ != nullptr; }

    std::string validate(const v1::ApplianceConfig& next);
    std::chrono::milliseconds drain(std::chrono::milliseconds bound);
    void apply(const v1::ApplianceConfig& next, v1::RestartClass cls);
    void start();
    std::string health();

   private:
    friend class FrontEndLink;
    explicit Session(FrontEndLink& link);
    FrontEndLink* link_;
    std::unique_lock<std::mutex> lock_;
    FrontEnd* fe_;
  };

  // Waits until no other call into the front end is in progress.
  Session session();
  // Waits for a call in progress, then drives `fe` (nullptr: none) from now on
  // and takes its first status snapshot.
  void attach(FrontEnd* fe);
  // Never waits (see above); nullopt when no front end is attached. Throws
  // what FrontEnd::status() throws when it is asked.
  std::optional<v1::FrontEndStatus> status();
  // FrontEnd::key_sets_changed(), after a call in progress; nothing when none is attached.
  void key_sets_changed();

 private:
  // Stores fe->status() as the snapshot; keeps the old one if it throws. Under call_mu_.
  void refresh(FrontEnd& fe) noexcept;

  std::mutex call_mu_;
  FrontEnd* fe_ = nullptr;  // written and read under call_mu_
  std::atomic<std::shared_ptr<const v1::FrontEndStatus>> last_;
};

}  // namespace edge::mgmt::agent_parts
