// FlowTable: sharded hash map of live flows; FlowEntry construction.
#include "edge/net/transport/flow_table.h"

namespace edge::net {

const char* to_string(CloseReason r) noexcept {
  switch (r) {
    case CloseReason::peer_closed:
      return "peer_closed";
    case CloseReason::io_error:
      return "io_error";
    case CloseReason::idle_timeout:
      return "idle_timeout";
    case CloseReason::flow_timeout:
      return "flow_timeout";
    case CloseReason::read_timeout:
      return "read_timeout";
    case CloseReason::framing_error:
      return "framing_error";
    case CloseReason::oversized:
      return "oversized";
    case CloseReason::bad_upgrade:
      return "bad_upgrade";
    case CloseReason::shutdown:
      return "shutdown";
    case CloseReason::evicted:
      return "evicted";
    case CloseReason::unregistered_lifetime:
      return "unregistered_lifetime";
  }
  return "?";
}

FlowEntry::FlowEntry(const flow::FlowKey& k, unsigned w, std::weak_ptr<FlowLink> l, Clock::time_point now)
    : key(k), worker(w), created(now), token(std::make_shared<flow::FlowToken>(k)), link(std::move(l)) {
  touch(now);
}

FlowTable::Shard& FlowTable::shard_for(const flow::FlowKey& key) const noexcept {
  // The keyed hash's high bits pick the shard; the map uses the full value.
  return shards_[(flow::FlowKeyHash{}(key) >> 32) % kShards];
}

bool FlowTable::insert(const std::shared_ptr<FlowEntry>& entry) {
  Shard& s = shard_for(entry->key);
  {
    std::lock_guard lock(s.mu);
    if (!s.map.emplace(entry->key, entry).second) return false;
  }
  total_.fetch_add(1, std::memory_order_relaxed);
  per_transport_[static_cast<std::size_t>(entry->key.transport) & 7].fetch_add(1, std::memory_order_relaxed);
  return true;
}

std::shared_ptr<FlowEntry> FlowTable::find(const flow::FlowKey& key) const {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  return it == s.map.end() ? nullptr : it->second;
}

bool FlowTable::erase(const FlowEntry& entry) {
  Shard& s = shard_for(entry.key);
  std::shared_ptr<FlowEntry> removed;  // released after the lock
  {
    std::lock_guard lock(s.mu);
    auto it = s.map.find(entry.key);
    if (it == s.map.end() || it->second.get() != &entry) return false;
    removed = std::move(it->second);
    s.map.erase(it);
  }
  total_.fetch_sub(1, std::memory_order_relaxed);
  per_transport_[static_cast<std::size_t>(entry.key.transport) & 7].fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void FlowTable::collect(std::vector<std::shared_ptr<FlowEntry>>& out, int worker) const {
  out.clear();
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [key, e] : s.map) {
      if (worker < 0 || e->worker == static_cast<unsigned>(worker)) out.push_back(e);
    }
  }
}

std::vector<FlowInfo> FlowTable::snapshot() const {
  std::vector<std::shared_ptr<FlowEntry>> entries;
  collect(entries);
  std::vector<FlowInfo> out;
  out.reserve(entries.size());
  for (const auto& e : entries) {
    FlowInfo i;
    i.key = e->key;
    i.created = e->created;
    i.last_activity = e->last_activity();
    i.registered = e->registered();
    i.flow_timer = e->flow_timer();
    i.messages_in = e->messages_in.load(std::memory_order_relaxed);
    i.messages_out = e->messages_out.load(std::memory_order_relaxed);
    i.bytes_in = e->bytes_in.load(std::memory_order_relaxed);
    i.bytes_out = e->bytes_out.load(std::memory_order_relaxed);
    out.push_back(i);
  }
  return out;
}

}  // namespace edge::net
