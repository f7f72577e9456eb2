// ConfirmTimer: one waiting thread, one deadline.
#include "confirm_timer.h"

#include <utility>

namespace edge::mgmt::agent_parts {

ConfirmTimer::ConfirmTimer(std::function<void()> on_expiry)
    : on_expiry_(std::move(on_expiry)), thread_([this] { loop(); }) {}

ConfirmTimer::~ConfirmTimer() { stop(); }

void ConfirmTimer::arm(Clock::time_point deadline) {
  {
    std::lock_guard lock(mu_);
    deadline_ = deadline;
  }
  cv_.notify_all();
}

void ConfirmTimer::disarm() {
  {
    std::lock_guard lock(mu_);
    deadline_.reset();
  }
  cv_.notify_all();
}

void ConfirmTimer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void ConfirmTimer::loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (!deadline_) {
      cv_.wait(lock);
      continue;
    }
    if (Clock::now() < *deadline_) {
      cv_.wait_until(lock, *deadline_);
      continue;
    }
    // Fired once; the callback re-arms if it could not finish.
    deadline_.reset();
    lock.unlock();
    on_expiry_();
    lock.lock();
  }
}

}  // namespace edge::mgmt::agent_parts
