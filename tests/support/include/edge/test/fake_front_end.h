// FakeFrontEnd: the one stand-in for the SIP front end behind mgmt::FrontEnd (agent, API and fuzz tests).
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/mgmt/front_end.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace edge::test {

// Records what the agent asks of it (every call, and the restart class it is
// told) and, when given an Hsm, mints through its own KeySetMac view as the
// real one does: the view changes only at apply(). Faults on request: a
// validation reason, failing applies, unhealthy health checks, a slow drain.
// A test may hold drain() or apply() on a gate; apply() then blocks with the
// fake's own lock held, as SipFrontEnd's does while it builds rules in the HSM.
// Thread-safe.
class FakeFrontEnd : public mgmt::FrontEnd {
 public:
  // hsm may be null: then no key-set view is kept (minting_version() is 0).
  explicit FakeFrontEnd(hsm::Hsm* hsm = nullptr) : hsm_(hsm) {}

  std::string validate(const mgmt::v1::ApplianceConfig& next) override;
  std::chrono::milliseconds drain(std::chrono::milliseconds bound) override;
  void apply(const mgmt::v1::ApplianceConfig& next, mgmt::v1::RestartClass cls) override;
  void start() override;
  std::string health() override;
  mgmt::v1::FrontEndStatus status() override;

  std::vector<std::string> calls() const;
  // The class of every apply() so far, in order.
  std::vector<mgmt::v1::RestartClass> classes() const;
  // The configuration of the last successful apply().
  mgmt::v1::ApplianceConfig current() const;
  std::uint32_t minting_version() const;
  std::shared_ptr<hsm::KeySetMac> mac() const;

  std::string validate_reason;  // set before the agent runs; "" accepts
  std::atomic<int> unhealthy_times{0};
  std::atomic<int> apply_failures{0};
  std::chrono::milliseconds drain_delay{0};
  std::atomic<bool> drain_entered{false};
  std::atomic<bool> apply_entered{false};
  // Set only while no apply runs; a valid gate holds the step until it is made ready.
  std::shared_future<void> drain_gate, apply_gate;

 private:
  hsm::Hsm* hsm_;
  mutable std::mutex mu_;
  std::vector<std::string> calls_;
  std::vector<mgmt::v1::RestartClass> classes_;
  std::string state_ = "running";
  mgmt::v1::ApplianceConfig current_;
  std::shared_ptr<hsm::KeySetMac> mac_;
};

}  // namespace edge::test
