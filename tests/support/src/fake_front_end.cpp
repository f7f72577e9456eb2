// FakeFrontEnd: records the agent's calls, keeps a key-set view like SipFrontEnd, fails on request.
#include <edge/test/fake_front_end.h>

#include <stdexcept>
#include <thread>

namespace edge::test {

namespace v1 = mgmt::v1;

std::string FakeFrontEnd::validate(const v1::ApplianceConfig&) {
  std::lock_guard lock(mu_);
  calls_.emplace_back("validate");
  return validate_reason;
}

std::chrono::milliseconds FakeFrontEnd::drain(std::chrono::milliseconds) {
  {
    std::lock_guard lock(mu_);
    calls_.emplace_back("drain");
    state_ = "draining";
  }
  drain_entered = true;
  if (drain_gate.valid()) drain_gate.wait();
  std::this_thread::sleep_for(drain_delay);
  return drain_delay;
}

void FakeFrontEnd::apply(const v1::ApplianceConfig& next, v1::RestartClass cls) {
  std::lock_guard lock(mu_);
  calls_.emplace_back("apply");
  classes_.push_back(cls);
  apply_entered = true;
  if (apply_gate.valid()) apply_gate.wait();
  if (apply_failures > 0) {
    --apply_failures;
    throw std::runtime_error("cannot bind tcp 127.0.0.1:5060");
  }
  current_ = next;
  const auto& ft = next.sip().flow_token();
  mac_ = hsm_ == nullptr || ft.key_set().empty() ? nullptr : hsm_->mac_for(ft.key_set());
  if (mac_) {
    mac_->refresh();
    mac_->set_minting_version(ft.key_version());
  }
}

void FakeFrontEnd::start() {
  std::lock_guard lock(mu_);
  calls_.emplace_back("start");
  state_ = "running";
}

std::string FakeFrontEnd::health() {
  std::lock_guard lock(mu_);
  calls_.emplace_back("health");
  if (unhealthy_times > 0) {
    --unhealthy_times;
    return "listener udp 127.0.0.1:5060 is down";
  }
  return "";
}

v1::FrontEndStatus FakeFrontEnd::status() {
  std::lock_guard lock(mu_);
  v1::FrontEndStatus s;
  s.set_state(state_);
  s.set_key_set(current_.sip().flow_token().key_set());
  if (mac_) s.set_minting_version(mac_->minting_version());
  return s;
}

std::vector<std::string> FakeFrontEnd::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

std::vector<v1::RestartClass> FakeFrontEnd::classes() const {
  std::lock_guard lock(mu_);
  return classes_;
}

v1::ApplianceConfig FakeFrontEnd::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::uint32_t FakeFrontEnd::minting_version() const {
  std::lock_guard lock(mu_);
  return mac_ ? mac_->minting_version() : 0;
}

std::shared_ptr<hsm::KeySetMac> FakeFrontEnd::mac() const {
  std::lock_guard lock(mu_);
  return mac_;
}

}  // namespace edge::test
