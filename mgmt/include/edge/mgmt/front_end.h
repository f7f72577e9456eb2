// FrontEnd: how the management agent drives the SIP front end without knowing it (firmware wires net/ in).
#pragma once

#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <chrono>
#include <string>

namespace edge::mgmt {

// The controlled-restart interface. The agent calls it one call at a time
// (never two at once, from whichever thread runs the change), in this order
// for an apply:
//
//   validate(next)            nothing changes; a non-empty answer refuses the apply
//   drain(bound)              stop taking new transactions, wait for in-flight ones
//   apply(next, cls)          swap configuration and key-set view (while drained)
//   start()                   take transactions again
//   health()                  listeners up, mint+verify round trip with the new key version
//
// and on a failed apply/start/health: drain, apply(previous, cls), start. A
// change of class RESTART_NONE is only apply(next, RESTART_NONE), without a
// drain; one of class RESTART_PROCESS is not passed to the front end at all
// (it takes effect at the next start of edged).
//
// The agent decides the restart class, once per change, from the property
// registry (PropertyRegistry::restart_class between what the front end was
// last given and `next`; the same configuration again, as for
// RestartFrontEnd or SIGHUP, is RESTART_FRONT_END). An implementation does
// what `cls` says: it keeps listening sockets and client flows across
// drain/apply/start unless `cls` is RESTART_LISTENERS, and never works the
// class out for itself, so that the class the operator is shown (ApplyResponse,
// Property.restart) is the one that ran.
class FrontEnd {
 public:
  virtual ~FrontEnd() = default;

  // Everything that can be checked before touching the running front end:
  // addresses and URIs parse, new listeners can bind, TLS material loads.
  // Returns "" when `next` is acceptable, else the reason. Must not throw.
  virtual std::string validate(const v1::ApplianceConfig& next) = 0;

  // Returns how long the drain took. Never throws; a drain that hits the
  // bound stops waiting (in-flight transactions still complete later).
  virtual std::chrono::milliseconds drain(std::chrono::milliseconds bound) = 0;

  // Swaps to `next` as a change of class `cls` (see above). Throws
  // std::exception with the reason when the swap fails; the front end is then
  // still drained, and apply(previous, RESTART_FRONT_END) (the configuration
  // it had, again) must work.
  virtual void apply(const v1::ApplianceConfig& next, v1::RestartClass cls) = 0;
  virtual void start() = 0;

  // "" when healthy, else the reason. Must not throw.
  virtual std::string health() = 0;

  // Called only between the other calls, never during one: the agent keeps
  // the last answer and shows that while a change is in progress, so status
  // never waits for an apply (see mgmt/src/front_end_link.h).
  virtual v1::FrontEndStatus status() = 0;

  // A key version stopped verifying in the HSM (retired) or a key set was
  // destroyed: the running key-set view must learn it now, so that no cache
  // of verified tokens keeps accepting the version. Must not throw; must not
  // change which version mints.
  virtual void key_sets_changed() {}
};

}  // namespace edge::mgmt
