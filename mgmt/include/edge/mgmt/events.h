// EventBus: fan-out of management events (applies, restarts, rollbacks, HSM faults) to watchers.
#pragma once

#include <edge/mgmt/v1/agent.pb.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace edge::mgmt {

// Each subscriber has a bounded queue: a watcher that does not read loses the
// oldest events (counted in dropped()), it never blocks a publisher.
class EventBus {
 public:
  class Subscription {
   public:
    // The next event, or nullopt after `timeout` or once the bus is closed.
    std::optional<v1::Event> next(std::chrono::milliseconds timeout);
    std::uint64_t dropped() const;
    ~Subscription();

   private:
    friend class EventBus;
    EventBus* bus_ = nullptr;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<v1::Event> queue_;
    std::uint64_t dropped_ = 0;
    bool closed_ = false;
  };

  explicit EventBus(std::size_t queue_limit = 256) : limit_(queue_limit) {}
  ~EventBus();

  // A new subscription starts with the standing events (see below).
  std::shared_ptr<Subscription> subscribe();
  void publish(v1::Event event);  // fills time_unix_ms when 0
  // Publishes `event` and keeps it as the standing event of its kind, which
  // every later subscriber gets first: a condition that holds since before
  // anyone watched (a config store whose newest generation is refused at
  // start) is not missed by a watcher that connects afterwards.
  void publish_standing(v1::Event event);
  void clear_standing(v1::Event::Kind kind);
  // Wakes every watcher; next() answers nullopt from now on.
  void close();

 private:
  friend class Subscription;
  void unsubscribe(Subscription* s);
  std::size_t limit_;
  std::mutex mu_;
  std::vector<Subscription*> subs_;
  std::vector<v1::Event> standing_;  // at most one per kind
  bool closed_ = false;
};

}  // namespace edge::mgmt
