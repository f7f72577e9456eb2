// Bounded transaction table: retransmission absorption and replay, UDP retransmission toward clients, 408
// once.
#include "edge/net/proxy/transactions.h"

#include <algorithm>

namespace edge::net {

TransactionTable::TransactionTable(std::size_t capacity, Timers timers)
    : capacity_(capacity == 0 ? 1 : capacity), timers_(timers) {
  entries_.reserve(std::min<std::size_t>(capacity_, 4096));
}

std::size_t TransactionTable::KeyHash::operator()(std::string_view s) const noexcept {
  return static_cast<std::size_t>(
      flow::siphash13(flow::process_hash_key(), {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}));
}

void TransactionTable::erase(Map::iterator it) {
  order_.erase(it->second.order);
  entries_.erase(it);
}

void TransactionTable::expire_front(Clock::time_point now) {
  // Amortised clean-up on the message path: a few of the oldest entries only, so
  // no message pays for a sweep. poll() does the full one.
  for (int i = 0; i < 4 && !order_.empty(); ++i) {
    auto it = entries_.find(order_.front());
    if (it == entries_.end() || it->second.expires > now) return;
    erase(it);
  }
}

TransactionTable::Entry& TransactionTable::insert(std::string_view key, Clock::time_point now) {
  expire_front(now);
  if (entries_.size() >= capacity_) {
    auto victim = entries_.find(order_.front());
    erase(victim);
    ++evictions_;
  }
  order_.emplace_back(key);
  auto [it, inserted] = entries_.try_emplace(order_.back());
  (void)inserted;
  it->second.order = std::prev(order_.end());
  return it->second;
}

TransactionTable::UpstreamHit TransactionTable::upstream_request(std::string_view key,
                                                                 const flow::FlowKey& client,
                                                                 Clock::time_point now,
                                                                 std::uint64_t core_epoch) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && !it->second.downstream && it->second.expires > now &&
      it->second.flow == client && (!it->second.last_response.empty() || it->second.epoch == core_epoch)) {
    return {Seen::retransmission, it->second.last_response};
  }
  if (it != entries_.end()) erase(it);
  Entry& e = insert(key, now);
  e.flow = client;
  e.epoch = core_epoch;
  e.expires = now + 64 * timers_.t1;  // Timer B/F: the client gives up by then
  return {};
}

void TransactionTable::upstream_response(std::string_view key, const flow::FlowKey& client, int status,
                                         std::string_view bytes, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  Entry* e;
  if (it == entries_.end() || it->second.downstream) {
    if (it != entries_.end()) erase(it);
    e = &insert(key, now);
    e->flow = client;
  } else {
    e = &it->second;
  }
  // Keep the latest response, but a provisional never replaces a final one.
  if (status >= e->last_status || e->last_status < 200) {
    e->last_response.assign(bytes);
    e->last_status = status;
  }
  // After a final response retransmissions may still come for 64*T1 (Timer J / H).
  e->expires = std::max(e->expires, now + 64 * timers_.t1);
}

void TransactionTable::downstream_request(std::string_view key, const flow::FlowKey& client, bool invite,
                                          std::string bytes, Clock::time_point now, bool retransmit) {
  std::lock_guard lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) erase(it);
  Entry& e = insert(key, now);
  e.downstream = true;
  e.invite = invite;
  e.retransmit = retransmit;
  e.flow = client;
  e.request = std::move(bytes);
  e.interval = timers_.t1;
  e.next_retransmit = now + timers_.t1;
  e.deadline = now + 64 * timers_.t1;
  e.expires = e.deadline + timers_.t1;
}

void TransactionTable::downstream_response(std::string_view key, int status, Clock::time_point now) noexcept {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || !it->second.downstream) return;
  if (status >= 200) {
    erase(it);  // answered: nothing more to retransmit or time out
    return;
  }
  it->second.response_status = status;
  // RFC 3261 §17.1.2.2: a non-INVITE client transaction keeps retransmitting at T2
  // once a provisional came; an INVITE stops (§17.1.1.2).
  it->second.interval = timers_.t2;
  // A ringing INVITE may wait for its final response up to the core's Timer C
  // (more than 3 minutes, §16.6 step 11): a flow lost meanwhile still gets its 430.
  if (it->second.invite) {
    it->second.deadline = std::max(it->second.deadline, now + kTimerC);
    it->second.expires = std::max(it->second.expires, it->second.deadline + timers_.t1);
  }
}

bool TransactionTable::take_downstream(std::string_view key) noexcept {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || !it->second.downstream || it->second.flow_failed) return false;
  erase(it);
  return true;
}

std::vector<TransactionTable::Due> TransactionTable::poll(Clock::time_point now) {
  std::vector<Due> due;
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (e.downstream) {
      if (e.flow_failed) {
        due.push_back({Due::Kind::flow_failed, e.flow, std::move(e.request)});
        order_.erase(e.order);
        it = entries_.erase(it);
        continue;
      }
      if (now >= e.deadline) {
        // Timer B/F on the UDP leg we retransmit. An INVITE that got a provisional
        // is left to the core's Timer C; on a stream the core's own timers run.
        if (e.retransmit && (e.response_status == 0 || !e.invite))
          due.push_back({Due::Kind::timeout, e.flow, std::move(e.request)});
        order_.erase(e.order);
        it = entries_.erase(it);
        continue;
      }
      const bool retransmitting = e.retransmit && !(e.invite && e.response_status != 0);
      if (retransmitting && now >= e.next_retransmit) {
        due.push_back({Due::Kind::retransmit, e.flow, e.request});
        e.interval = e.invite ? e.interval * 2 : std::min(e.interval * 2, timers_.t2);
        e.next_retransmit = now + e.interval;
      }
    } else if (e.expires <= now) {
      order_.erase(e.order);
      it = entries_.erase(it);
      continue;
    }
    ++it;
  }
  return due;
}

void TransactionTable::forget_flow(const flow::FlowKey& f) noexcept {
  std::lock_guard lock(mu_);
  for (auto& [key, e] : entries_) {
    if (e.downstream && e.flow == f) e.flow_failed = true;
  }
}

void TransactionTable::forget_request(std::string_view key) noexcept {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && !it->second.downstream && it->second.last_status == 0) erase(it);
}

std::size_t TransactionTable::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

std::uint64_t TransactionTable::evictions() const noexcept {
  std::lock_guard lock(mu_);
  return evictions_;
}

}  // namespace edge::net
