// Bounded transaction memory: absorbs UDP retransmissions, replays our answers, retransmits toward UDP
// clients.
#pragma once

#include "edge/net/token/flow_key.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace edge::net {

using Clock = std::chrono::steady_clock;

// The proxy is stateless toward the core wherever RFC 3261 allows; this table is
// the "just enough" memory it needs besides:
//  * upstream entries (a UDP client's request): a retransmission is absorbed
//    instead of forwarded again, and the last response (ours or the core's) is
//    replayed to it, so a 403/430/503 costs one decision (one HSM verify) per
//    transaction, not one per retransmission;
//  * downstream entries (a request the core sent to a client flow): until the
//    client's final response, a flow that closes gets the core a 430 Flow Failed
//    for it, once (RFC 5626 §5.3), so the registrar can try another flow. On a
//    UDP client behind a reliable core link nobody else retransmits on the UDP
//    leg, so we do (Timer A/E), and answer 408 to the core once when the client
//    never answered (Timer B/F).
// Keys are our Via branch plus the method class, so an INVITE, its CANCEL and its
// ACK (same branch) are separate entries. Thread-safe; the lock is never held
// while calling out.
class TransactionTable {
 public:
  struct Timers {
    std::chrono::milliseconds t1{500};
    std::chrono::milliseconds t2{4000};
  };
  TransactionTable(std::size_t capacity, Timers timers);

  enum class Seen : std::uint8_t { new_transaction, retransmission };
  struct UpstreamHit {
    Seen seen = Seen::new_transaction;
    std::string replay;  // last response to resend to the client; empty: absorb silently
  };
  // A request from a UDP client: records it (new) or reports a retransmission.
  // core_epoch is Network::core_link_epoch() now: a retransmission of a request
  // not yet answered that comes after the core link went down or up since the
  // request was recorded is reported new (the core may never have had it), so
  // it is forwarded again or answered 503, never absorbed unanswered.
  UpstreamHit upstream_request(std::string_view key, const flow::FlowKey& client, Clock::time_point now,
                               std::uint64_t core_epoch = 0);
  // The response we are about to send to a UDP client for this transaction (ours or
  // relayed); keeps it for replay. Creates the entry when missing (a local answer).
  void upstream_response(std::string_view key, const flow::FlowKey& client, int status,
                         std::string_view bytes, Clock::time_point now);

  // A request we send to a client flow on behalf of the core, recorded before
  // it is sent: 430 if the flow closes before a final response; with
  // `retransmit` (a UDP client, a reliable core link) retransmitted until
  // answered and 408 at Timer B/F.
  void downstream_request(std::string_view key, const flow::FlowKey& client, bool invite, std::string bytes,
                          Clock::time_point now, bool retransmit = true);
  // The send of a recorded downstream request failed at once: true (and the
  // entry gone) when the caller answers it; false when it was already gone
  // (a flow close took it and its 430 is due from poll()).
  bool take_downstream(std::string_view key) noexcept;
  // A response from the client for `key`: stops retransmission (and the 408).
  void downstream_response(std::string_view key, int status, Clock::time_point now = Clock::now()) noexcept;

  struct Due {
    enum class Kind : std::uint8_t { retransmit, timeout, flow_failed } kind = Kind::retransmit;
    flow::FlowKey flow;
    std::string bytes;  // the request as sent to the client
  };
  // Expires entries and returns what is due at `now`: retransmissions toward UDP
  // clients, timed-out requests that need a 408 toward the core and requests
  // whose flow closed that need a 430 (each once).
  std::vector<Due> poll(Clock::time_point now);

  // An upstream request we neither forwarded nor answered (its HSM work was
  // refused and a UDP client gets no 503): its retransmission is a new try.
  void forget_request(std::string_view key) noexcept;

  // A flow closed: its downstream entries can never be answered; the next
  // poll() returns each as flow_failed (430 to the core), once.
  void forget_flow(const flow::FlowKey& flow) noexcept;

  std::size_t size() const;
  std::uint64_t evictions() const noexcept;

 private:
  struct Entry {
    bool downstream = false;
    bool invite = false;
    bool retransmit = false;   // downstream: Timer A/E and 408 at B/F (UDP leg)
    bool flow_failed = false;  // downstream: the flow closed; 430 due
    std::uint64_t epoch = 0;   // upstream: core_link_epoch when recorded
    flow::FlowKey flow;
    Clock::time_point expires{};
    // upstream
    std::string last_response;
    int last_status = 0;
    // downstream
    std::string request;
    Clock::time_point next_retransmit{};
    std::chrono::milliseconds interval{};
    Clock::time_point deadline{};
    int response_status = 0;  // 0: nothing heard from the client yet
    std::list<std::string>::iterator order;
  };

  // Keys derive from branches clients choose: a keyed hash keeps them from piling
  // entries into one bucket; transparent, so lookups by string_view never allocate.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept;
  };
  struct KeyEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };
  using Map = std::unordered_map<std::string, Entry, KeyHash, KeyEq>;

  // RFC 3261 §16.6 step 11: Timer C, more than 3 minutes.
  static constexpr std::chrono::milliseconds kTimerC{181'000};

  Entry& insert(std::string_view key, Clock::time_point now);  // lock held
  void erase(Map::iterator it);                                // lock held
  void expire_front(Clock::time_point now);                    // lock held

  const std::size_t capacity_;
  const Timers timers_;
  mutable std::mutex mu_;
  Map entries_;
  std::list<std::string> order_;  // insertion order: eviction and cheap expiry
  std::uint64_t evictions_ = 0;
};

}  // namespace edge::net
