// Counters of the edge-proxy rules, as a plain snapshot for status and tests.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace edge::net {

// The method classes requests are counted by (bounded: a metric label).
enum class MethodClass : std::uint8_t { register_, invite, ack, bye, cancel, options, other };
inline constexpr std::size_t kMethodClasses = 7;
const char* to_string(MethodClass c) noexcept;  // "register", "invite", ...

struct ProxyStats {
  // Requests by method class: received from clients / from the core, and
  // forwarded to the core / over a client's flow.
  std::array<std::uint64_t, kMethodClasses> requests_in_client{}, requests_in_core{};
  std::array<std::uint64_t, kMethodClasses> requests_out_core{}, requests_out_flow{};
  // What came in.
  std::uint64_t requests_from_clients = 0;
  std::uint64_t requests_from_core = 0;
  std::uint64_t responses_from_core = 0;
  std::uint64_t responses_from_clients = 0;
  // What went out.
  std::uint64_t forwarded_to_core = 0;  // requests and responses
  std::uint64_t forwarded_to_flow = 0;  // requests and responses
  std::uint64_t local_responses = 0;    // every answer we generated, any status
  std::uint64_t r200_options = 0, r400 = 0, r403 = 0, r404 = 0, r408 = 0, r416 = 0, r420 = 0, r421 = 0,
                r430 = 0, r439 = 0, r483 = 0, r500 = 0, r503 = 0;
  // RFC 5626 work.
  std::uint64_t paths_added = 0, record_routes_added = 0;
  std::uint64_t incoming_via_token = 0;  // routed to a flow by a token
  std::uint64_t outgoing_via_token = 0;  // client's own token seen on its flow
  std::uint64_t flow_timers_set = 0;
  // HSM economy: token operations the caches saved, and the ones that reached the HSM.
  std::uint64_t mints_avoided = 0, mints_hsm = 0;
  std::uint64_t verifies_avoided = 0, verifies_hsm = 0;
  // HSM work off the I/O path (flow::HsmWorkQueue): messages parked for it and
  // delivered again; those the admission control refused (answered 503 on a
  // stream or to the core, dropped on UDP: drop_hsm_busy); those that came back
  // shed (a more urgent job took their place: answered the same way); those
  // whose flow was gone when they came back (nobody to answer).
  std::uint64_t hsm_parked = 0, hsm_resumed = 0;
  std::uint64_t hsm_refused_budget = 0, hsm_refused_queue_full = 0, hsm_shed = 0;
  std::uint64_t hsm_resume_dropped = 0;
  // Transaction memory.
  std::uint64_t retransmissions_absorbed = 0, responses_replayed = 0;
  std::uint64_t acks_absorbed = 0;  // ACKs for final responses of ours (RFC 3261 §17.1.1.3): end here
  std::uint64_t retransmissions_to_clients = 0, transaction_evictions = 0;
  // Drops, by reason (nothing else is ever silently dropped).
  std::uint64_t drop_unparseable = 0;        // no response could be built
  std::uint64_t drop_response_not_ours = 0;  // top Via not ours / tag wrong
  std::uint64_t drop_response_flow_gone = 0;
  std::uint64_t drop_response_core_down = 0;
  std::uint64_t drop_ack = 0;                   // ACK we could not route (never answered)
  std::uint64_t drop_answer_undeliverable = 0;  // our own answer could not be sent
  std::uint64_t drop_edit_failed = 0;           // editor limits (answered 500 when possible)
  std::uint64_t drop_hsm_busy = 0;              // UDP request refused HSM work (no 503: reflection)
  std::uint64_t log_suppressed = 0;
};

}  // namespace edge::net
