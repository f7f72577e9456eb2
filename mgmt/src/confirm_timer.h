// ConfirmTimer: the thread that wakes the change controller when a confirmed commit's deadline passes.
//
// Owns: that thread and the one deadline armed (at most one confirmed commit
// is pending at a time). It only keeps time; what expiry means (roll the
// pending generation back, if it is still pending) is the change controller's
// callback. Locking: one mutex and condition variable guard the deadline; the
// callback runs without them, because it takes the change controller's lock,
// which an apply or confirm holds while it arms or disarms this timer.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace edge::mgmt::agent_parts {

class ConfirmTimer {
 public:
  using Clock = std::chrono::steady_clock;

  // Starts the thread; `on_expiry` runs on it once per armed deadline that passes.
  explicit ConfirmTimer(std::function<void()> on_expiry);
  ~ConfirmTimer();
  ConfirmTimer(const ConfirmTimer&) = delete;
  ConfirmTimer& operator=(const ConfirmTimer&) = delete;

  // Replaces any armed deadline.
  void arm(Clock::time_point deadline);
  void disarm();
  // Joins the thread (after a callback in progress returns); an armed
  // deadline never fires after this. Idempotent.
  void stop();

 private:
  void loop();

  std::function<void()> on_expiry_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Clock::time_point> deadline_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the fields above exist
};

}  // namespace edge::mgmt::agent_parts
