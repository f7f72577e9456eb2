// FrontEnd: how the management agent drives the SIP front end without knowing it (firmware wires net/ in).
#pragma once

#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <chrono>
#include <string>

namespace edge::mgmt {

// The controlled-restart interface. The agent calls it from its own thread,
// one call at a time, in this order for an apply:
//
//   validate(next)            nothing changes; a non-empty answer refuses the apply
//   drain(bound)              stop taking new transactions, wait for in-flight ones
//   apply(next)               swap configuration and key-set view (while drained)
//   start()                   take transactions again
//   health()                  listeners up, mint+verify round trip with the new key version
//
// and on a failed apply/start/health: drain, apply(previous), start. An
// implementation keeps listening sockets and client flows across
// drain/apply/start unless restart_class(current, next) is RESTART_LISTENERS.
class FrontEnd {
 public:
  virtual ~FrontEnd() = default;

  // What a change from `current` to `next` does to the front end.
  virtual v1::RestartClass restart_class(const v1::ApplianceConfig& current, const v1::ApplianceConfig& next) = 0;

  // Everything that can be checked before touching the running front end:
  // addresses and URIs parse, new listeners can bind, TLS material loads.
  // Returns "" when `next` is acceptable, else the reason. Must not throw.
  virtual std::string validate(const v1::ApplianceConfig& next) = 0;

  // Returns how long the drain took. Never throws; a drain that hits the
  // bound stops waiting (in-flight transactions still complete later).
  virtual std::chrono::milliseconds drain(std::chrono::milliseconds bound) = 0;

  // Throws std::exception with the reason when the swap fails; the front end
  // is then still drained and apply(previous) must work.
  virtual void apply(const v1::ApplianceConfig& next) = 0;
  virtual void start() = 0;

  // "" when healthy, else the reason. Must not throw.
  virtual std::string health() = 0;

  virtual v1::FrontEndStatus status() = 0;

  // A key version stopped verifying in the HSM (retired) or a key set was
  // destroyed: the running key-set view must learn it now, so that no cache
  // of verified tokens keeps accepting the version. Must not throw; must not
  // change which version mints.
  virtual void key_sets_changed() {}
};

}  // namespace edge::mgmt
