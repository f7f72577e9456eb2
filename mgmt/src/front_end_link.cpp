// FrontEndLink: serialized calls into the FrontEnd and the status snapshot they leave behind.
#include "front_end_link.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace edge::mgmt::agent_parts {

// The steps that change the front end refresh the snapshot whether they
// returned or threw: a failed apply leaves a state that status should show.
FrontEndLink::Session::Session(FrontEndLink& link) : link_(&link), lock_(link.call_mu_), fe_(link.fe_) {}

std::string FrontEndLink::Session::validate(const v1::ApplianceConfig& next) { return fe_->validate(next); }

std::chrono::milliseconds FrontEndLink::Session::drain(std::chrono::milliseconds bound) {
  const auto took = fe_->drain(bound);
  link_->refresh(*fe_);
  return took;
}

void FrontEndLink::Session::apply(const v1::ApplianceConfig& next, v1::RestartClass cls) {
  try {
    fe_->apply(next, cls);
  } catch (...) {
    link_->refresh(*fe_);
    throw;
  }
  link_->refresh(*fe_);
}

void FrontEndLink::Session::start() {
  try {
    fe_->start();
  } catch (...) {
    link_->refresh(*fe_);
    throw;
  }
  link_->refresh(*fe_);
}

std::string FrontEndLink::Session::health() { return fe_->health(); }

FrontEndLink::Session FrontEndLink::session() { return Session(*this); }

void FrontEndLink::attach(FrontEnd* fe) {
  std::lock_guard lock(call_mu_);
  fe_ = fe;
  if (fe_ == nullptr) {
    last_.store(nullptr);
  } else {
    refresh(*fe_);
  }
}

std::optional<v1::FrontEndStatus> FrontEndLink::status() {
  {
    std::unique_lock lock(call_mu_, std::try_to_lock);
    if (lock.owns_lock()) {
      if (fe_ == nullptr) return std::nullopt;
      auto fresh = std::make_shared<const v1::FrontEndStatus>(fe_->status());
      last_.store(fresh);
      return *fresh;
    }
  }
  // A transition is in progress: its last step's snapshot.
  const auto last = last_.load();
  if (!last) return std::nullopt;
  return *last;
}

void FrontEndLink::key_sets_changed() {
  std::lock_guard lock(call_mu_);
  if (fe_ != nullptr) fe_->key_sets_changed();
}

void FrontEndLink::refresh(FrontEnd& fe) noexcept {
  try {
    last_.store(std::make_shared<const v1::FrontEndStatus>(fe.status()));
  } catch (const std::exception& e) {
    spdlog::warn("event=mgmt_front_end_status_failed reason=\"{}\"", e.what());
  }
}

}  // namespace edge::mgmt::agent_parts
