// What the edge-proxy rules keep for the life of the process: transaction memory, branch key and seed,
// the To-tag counter, the counters, the log limiter.
#pragma once

#include "edge/net/proxy/log.h"
#include "edge/net/proxy/stats.h"
#include "edge/net/proxy/transactions.h"
#include "edge/net/proxy/via_branch.h"
#include "edge/net/sip/editor.h"
#include "edge/net/sip/response.h"
#include "edge/net/token/hsm_work.h"
#include "edge/net/transport/message_handler.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace edge::sip {
class Message;
}

namespace edge::net {

// Fixed for the life of a ProxyState (so for the life of the process in edged):
// nothing here is an operator property, and a table whose capacity or timers
// changed under live entries would have to be rebuilt, which is the bug this
// split removes.
struct ProxyStateOptions {
  // Transaction memory (retransmission absorption, stored local answers, UDP
  // retransmission toward clients). When full the oldest entry is evicted: a
  // later retransmission is then forwarded once more, which the core absorbs.
  std::size_t max_transactions = 16384;
  // RFC 3261 T1 / T2: retransmission toward UDP clients and entry lifetimes (64*T1).
  std::chrono::milliseconds t1{500};
  std::chrono::milliseconds t2{4000};
  // Log lines per event kind per second before suppression (0: no limit).
  std::uint32_t log_lines_per_second = 10;
  // HSM work (mints, cache-missing verifies) runs on this queue's threads, off
  // the I/O workers; hsm_work.threads is fixed here, its budgets and bound
  // follow the properties (hsm_work().configure() at a controlled restart).
  // hsm_offload false: the HSM calls run inline on the worker (tests, tools).
  bool hsm_offload = true;
  flow::HsmWorkConfig hsm_work{};
};

// The counters: one atomic per ProxyStats field. The list is checked by the
// compiler in stats(): a name missing on either side does not build.
#define EDGE_PROXY_COUNTERS(X)                                                                               \
  X(requests_from_clients)                                                                                   \
  X(requests_from_core)                                                                                      \
  X(responses_from_core)                                                                                     \
  X(responses_from_clients) X(forwarded_to_core) X(forwarded_to_flow) X(local_responses) X(r200_options)     \
      X(r400) X(r403) X(r404) X(r408) X(r416) X(r421) X(r430) X(r439) X(r483) X(r500) X(r503) X(paths_added) \
          X(record_routes_added) X(incoming_via_token) X(outgoing_via_token) X(flow_timers_set)              \
              X(mints_avoided) X(mints_hsm) X(verifies_avoided) X(verifies_hsm) X(retransmissions_absorbed)  \
                  X(responses_replayed) X(retransmissions_to_clients) X(drop_unparseable)                    \
                      X(drop_response_not_ours) X(drop_response_flow_gone) X(drop_response_core_down)        \
                          X(drop_ack) X(drop_answer_undeliverable) X(drop_edit_failed) X(drop_hsm_busy)      \
                              X(hsm_parked) X(hsm_resumed) X(hsm_refused_budget) X(hsm_refused_queue_full)   \
                                  X(hsm_shed) X(hsm_resume_dropped) X(r420) X(acks_absorbed)

struct ProxyCounters {
// NOLINTNEXTLINE(bugprone-macro-parentheses): name is a member's identifier, not an expression
#define EDGE_X(name) std::atomic<std::uint64_t> name{0};
  EDGE_PROXY_COUNTERS(EDGE_X)
#undef EDGE_X
  using ByMethod = std::array<std::atomic<std::uint64_t>, kMethodClasses>;
  ByMethod requests_in_client{}, requests_in_core{}, requests_out_core{}, requests_out_flow{};
};

MethodClass method_class_of(sip::Method m) noexcept;
inline void bump(ProxyCounters::ByMethod& c, sip::Method m) noexcept {
  c[static_cast<std::size_t>(method_class_of(m))].fetch_add(1, std::memory_order_relaxed);
}

inline void bump(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

// The long-lived half of the proxy, as Sofia-SIP's nta_agent is to its
// callbacks: an EdgeProxy (the rules: configuration and token codec) is
// replaced at every controlled restart, the ProxyState it points to is not.
// So, across any number of applies:
//  * the stateless branch of a request (RFC 3261 §16.11) stays the same: a
//    CANCEL, a non-2xx ACK or a UDP retransmission of a request forwarded before
//    the apply matches its INVITE at the core;
//  * one transaction table sees both halves of a transaction: a client's answer
//    after the swap stops the retransmissions and the 408 of a request the core
//    sent before it;
//  * the counters keep counting (status reads one set, no arithmetic);
//  * the log limiter's windows carry on (a restart does not reopen a flood).
//
// Thread-safe: every member may be used from every worker at once (atomics,
// and the transaction table's and the log limiter's own locks, never held
// while calling out).
class ProxyState {
 public:
  explicit ProxyState(const ProxyStateOptions& options = {}, LogSink log = {});
  ProxyState(const ProxyState&) = delete;
  ProxyState& operator=(const ProxyState&) = delete;

  const ProxyStateOptions& options() const noexcept { return options_; }

  // The unique part of the branch we put on a request we forward: derived from
  // the request's own branch (or its transaction identifiers) under a seed drawn
  // once per ProxyState, so equal for retransmissions, CANCEL and non-2xx ACK.
  sip::Branch stateless_branch(const sip::Message& request) const noexcept;
  // Our Via branches, tagged under a key that is stable for the process.
  const BranchCodec& branches() const noexcept { return branches_; }
  // A To tag for an answer of ours; never the same twice in a process.
  sip::Tag next_tag() noexcept;
  // True for a To tag next_tag() handed out (an ACK for an answer of ours).
  bool own_tag(std::string_view tag) const noexcept;

  TransactionTable& transactions() noexcept { return transactions_; }
  // Null when options().hsm_offload is false.
  flow::HsmWorkQueue* hsm_work() noexcept { return hsm_work_.get(); }
  flow::HsmWorkStats hsm_work_stats() const;
  ProxyCounters& counters() noexcept { return counters_; }
  // Counts a local answer: local_responses and its status's own counter.
  void count_status(int status) noexcept;
  bool logging() const noexcept { return log_.enabled(); }
  void log(LogLevel level, LogEvent event, std::string_view fields, Clock::time_point now);

  // Retransmits toward UDP clients and answers the core 408 once for a request a
  // UDP client never answered (Timer A/E, B/F). Called periodically on one
  // transport worker (MessageHandler::on_timer); cheap when nothing is due.
  void on_timer(Clock::time_point now, Network& net);
  // A flow closed: its pending client-side transactions can never be answered.
  void on_flow_closed(const FlowKey& flow) noexcept { transactions_.forget_flow(flow); }

  ProxyStats stats() const noexcept;

 private:
  const ProxyStateOptions options_;
  ProxyCounters counters_;
  RateLimitedLog log_;
  const BranchCodec branches_;
  const std::uint64_t seed_;  // stateless branch and To-tag seed, random per ProxyState
  std::atomic<std::uint64_t> tag_counter_{0};
  TransactionTable transactions_;
  // Last member: its threads stop (and shed what waits) before the rest goes.
  std::unique_ptr<flow::HsmWorkQueue> hsm_work_;
};

}  // namespace edge::net
