// The table of live client flows: one entry per flow, O(1) lookup by FlowKey, sharded locks.
#pragma once

#include "edge/net/token/flow_key.h"
#include "edge/net/token/token_codec.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace edge::net {

using Clock = std::chrono::steady_clock;

// Why a flow ended (counted, logged, never sent on the wire).
enum class CloseReason : std::uint8_t {
  peer_closed,            // EOF / connection reset
  io_error,               // read/write/handshake failure
  idle_timeout,           // unregistered flow silent longer than the idle timeout
  flow_timeout,           // registered flow silent longer than Flow-Timer + grace
  read_timeout,           // half a message then silence (slowloris)
  framing_error,          // the stream could not be framed
  oversized,              // message larger than the limit
  bad_upgrade,            // WebSocket upgrade refused
  shutdown,               // Transports::stop()
  evicted,                // an unregistered UDP flow made room (limits.max_udp_flows)
  unregistered_lifetime,  // a connection that never registered outlived its lifetime
};
const char* to_string(CloseReason r) noexcept;

class FlowEntry;

// The lower half of a flow: the connection it lives on, or the UDP socket it is
// reached through. Implemented inside the transport layer.
class FlowLink {
 public:
  virtual ~FlowLink() = default;
  // Queues bytes for the flow's peer; any thread, never blocks. False when the
  // link is closed or its write queue is full.
  virtual bool send(const FlowEntry& flow, std::string bytes) = 0;
  // Ends the flow; called on the flow's owning worker thread only.
  virtual void expire(const std::shared_ptr<FlowEntry>& flow, CloseReason why) = 0;
};

// One client flow. Identity fields are immutable; the rest are atomics so the
// owning worker, the proxy (any thread) and status readers never need a lock.
class FlowEntry {
 public:
  FlowEntry(const flow::FlowKey& key, unsigned worker, std::weak_ptr<FlowLink> link, Clock::time_point now);
  FlowEntry(const FlowEntry&) = delete;
  FlowEntry& operator=(const FlowEntry&) = delete;

  const flow::FlowKey key;
  const unsigned worker;  // the worker thread that owns the flow's I/O
  const Clock::time_point created;
  const std::shared_ptr<flow::FlowToken> token;  // minted once per key version
  const std::weak_ptr<FlowLink> link;
  // A UDP flow opened by a request over it from the core (a token this process
  // never held: another member's, or ours before a restart), not by the client.
  // Written before the entry is in the table, read-only after.
  bool adopted = false;

  void touch(Clock::time_point now) noexcept {
    last_activity_ns.store(now.time_since_epoch().count(), std::memory_order_relaxed);
  }
  Clock::time_point last_activity() const noexcept {
    return Clock::time_point(Clock::duration(last_activity_ns.load(std::memory_order_relaxed)));
  }
  bool registered() const noexcept { return registered_.load(std::memory_order_acquire); }
  std::chrono::seconds flow_timer() const noexcept {
    return std::chrono::seconds(flow_timer_s_.load(std::memory_order_relaxed));
  }
  void mark_registered(std::chrono::seconds flow_timer) noexcept {
    flow_timer_s_.store(flow_timer.count(), std::memory_order_relaxed);
    registered_.store(true, std::memory_order_release);
  }
  // Stream read deadline (slowloris): 0 = no message in progress.
  void set_read_deadline(Clock::time_point t) noexcept {
    read_deadline_ns.store(t.time_since_epoch().count(), std::memory_order_relaxed);
  }
  void clear_read_deadline() noexcept { read_deadline_ns.store(0, std::memory_order_relaxed); }
  std::int64_t read_deadline_raw() const noexcept { return read_deadline_ns.load(std::memory_order_relaxed); }

  std::atomic<std::uint64_t> messages_in{0}, messages_out{0}, bytes_in{0}, bytes_out{0};

 private:
  std::atomic<Clock::rep> last_activity_ns{0};
  std::atomic<Clock::rep> read_deadline_ns{0};
  std::atomic<bool> registered_{false};
  std::atomic<std::int64_t> flow_timer_s_{0};
};

// A point-in-time copy of one entry for status pages and tests.
struct FlowInfo {
  flow::FlowKey key;
  Clock::time_point created, last_activity;
  bool registered = false;
  std::chrono::seconds flow_timer{0};
  std::uint64_t messages_in = 0, messages_out = 0, bytes_in = 0, bytes_out = 0;
};

// Thread-safe map FlowKey -> FlowEntry. Keys hash with the process's SipHash key
// (an attacker chooses remote ports). A lock covers only the map operation of
// one shard: never I/O, never a handler call.
class FlowTable {
 public:
  static constexpr std::size_t kShards = 64;

  FlowTable() = default;
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // Adds the entry; false (and no change) when a flow with its key exists.
  bool insert(const std::shared_ptr<FlowEntry>& entry);
  std::shared_ptr<FlowEntry> find(const flow::FlowKey& key) const;
  // Removes `entry` if it is still the one stored under its key (a newer flow
  // that reuses the key is left alone). True when it removed it.
  bool erase(const FlowEntry& entry);

  // Copies the entries owned by `worker` (all when worker < 0) into out
  // (cleared first; its capacity is reused between sweeps).
  void collect(std::vector<std::shared_ptr<FlowEntry>>& out, int worker = -1) const;

  std::size_t size() const noexcept { return total_.load(std::memory_order_relaxed); }
  std::size_t count(flow::Transport t) const noexcept {
    return per_transport_[static_cast<std::size_t>(t) & 7].load(std::memory_order_relaxed);
  }
  std::vector<FlowInfo> snapshot() const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<flow::FlowKey, std::shared_ptr<FlowEntry>, flow::FlowKeyHash> map;
  };
  Shard& shard_for(const flow::FlowKey& key) const noexcept;

  mutable std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> total_{0};
  std::array<std::atomic<std::size_t>, 8> per_transport_{};
};

}  // namespace edge::net
