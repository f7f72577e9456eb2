// EventBus: bounded per-watcher queues; a slow watcher loses its oldest events, a publisher never waits.
#include <edge/mgmt/events.h>

#include <algorithm>

namespace edge::mgmt {

std::optional<v1::Event> EventBus::Subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return closed_ || !queue_.empty(); });
  if (closed_ || queue_.empty()) return std::nullopt;
  v1::Event e = std::move(queue_.front());
  queue_.pop_front();
  return e;
}

std::uint64_t EventBus::Subscription::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

EventBus::Subscription::~Subscription() {
  EventBus* bus = nullptr;
  {
    std::lock_guard lock(mu_);
    bus = bus_;
  }
  if (bus != nullptr) bus->unsubscribe(this);
}

EventBus::~EventBus() { close(); }

std::shared_ptr<EventBus::Subscription> EventBus::subscribe() {
  auto s = std::make_shared<Subscription>();
  std::lock_guard lock(mu_);
  if (closed_) {
    s->closed_ = true;
  } else {
    s->bus_ = this;
    s->queue_.assign(standing_.begin(), standing_.end());
    subs_.push_back(s.get());
  }
  return s;
}

namespace {
void stamp(v1::Event& event) {
  if (event.time_unix_ms() == 0) {
    event.set_time_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
  }
}
}  // namespace

void EventBus::publish_standing(v1::Event event) {
  stamp(event);
  {
    std::lock_guard lock(mu_);
    std::erase_if(standing_, [&](const v1::Event& e) { return e.kind() == event.kind(); });
    standing_.push_back(event);
  }
  publish(std::move(event));
}

void EventBus::clear_standing(v1::Event::Kind kind) {
  std::lock_guard lock(mu_);
  std::erase_if(standing_, [&](const v1::Event& e) { return e.kind() == kind; });
}

void EventBus::publish(v1::Event event) {
  stamp(event);
  std::lock_guard lock(mu_);
  if (closed_) return;
  for (Subscription* s : subs_) {
    {
      std::lock_guard slock(s->mu_);
      if (limit_ == 0) {
        ++s->dropped_;
        continue;
      }
      if (s->queue_.size() >= limit_) {
        s->queue_.pop_front();
        ++s->dropped_;
      }
      s->queue_.push_back(event);
    }
    s->cv_.notify_one();
  }
}

void EventBus::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  for (Subscription* s : subs_) {
    {
      std::lock_guard slock(s->mu_);
      s->closed_ = true;
      s->bus_ = nullptr;
    }
    s->cv_.notify_all();
  }
  subs_.clear();
}

void EventBus::unsubscribe(Subscription* s) {
  std::lock_guard lock(mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), s), subs_.end());
}

}  // namespace edge::mgmt
