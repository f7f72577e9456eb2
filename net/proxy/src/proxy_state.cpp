// The process-lifetime half of the edge proxy: counters, branch seed, To tags, transaction timers.
#include "edge/net/proxy/proxy_state.h"

#include "edge/net/sip/editor.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"

#include <random>
#include <stdexcept>
#include <string>
#include <utility>

namespace edge::net {
namespace {

std::uint64_t random_seed() {
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

ProxyState::ProxyState(const ProxyStateOptions& options, LogSink log)
    : options_(options),
      log_(std::move(log), options_.log_lines_per_second),
      // Domain-separated from the flow-table hash key, stable for the process.
      branches_({flow::process_hash_key()[0] ^ 0x7669616272616e63ULL, flow::process_hash_key()[1] + 1}),
      seed_(random_seed()),
      transactions_(options_.max_transactions, {options_.t1, options_.t2}) {
  if (options_.max_transactions == 0) throw std::invalid_argument("proxy: max_transactions is 0");
  if (options_.t1.count() <= 0 || options_.t2 < options_.t1) throw std::invalid_argument("proxy: bad T1/T2");
  if (options_.hsm_offload) hsm_work_ = std::make_unique<flow::HsmWorkQueue>(options_.hsm_work);  // throws
}

MethodClass method_class_of(sip::Method m) noexcept {
  switch (m) {
    case sip::Method::register_: return MethodClass::register_;
    case sip::Method::invite: return MethodClass::invite;
    case sip::Method::ack: return MethodClass::ack;
    case sip::Method::bye: return MethodClass::bye;
    case sip::Method::cancel: return MethodClass::cancel;
    case sip::Method::options: return MethodClass::options;
    default: return MethodClass::other;
  }
}

const char* to_string(MethodClass c) noexcept {
  switch (c) {
    case MethodClass::register_: return "register";
    case MethodClass::invite: return "invite";
    case MethodClass::ack: return "ack";
    case MethodClass::bye: return "bye";
    case MethodClass::cancel: return "cancel";
    case MethodClass::options: return "options";
    case MethodClass::other: break;
  }
  return "other";
}

flow::HsmWorkStats ProxyState::hsm_work_stats() const {
  return hsm_work_ ? hsm_work_->stats() : flow::HsmWorkStats{};
}

sip::Branch ProxyState::stateless_branch(const sip::Message& request) const noexcept {
  return sip::make_stateless_branch(seed_, request);
}

sip::Tag ProxyState::next_tag() noexcept {
  return sip::make_tag(seed_, tag_counter_.fetch_add(1, std::memory_order_relaxed));
}

bool ProxyState::own_tag(std::string_view tag) const noexcept {
  return sip::is_own_tag(seed_, tag, tag_counter_.load(std::memory_order_relaxed));
}

void ProxyState::log(LogLevel level, LogEvent event, std::string_view fields, Clock::time_point now) {
  if (log_.enabled()) log_.log(level, event, fields, now);
}

ProxyStats ProxyState::stats() const noexcept {
  ProxyStats s;
#define EDGE_X(name) s.name = counters_.name.load(std::memory_order_relaxed);
  EDGE_PROXY_COUNTERS(EDGE_X)
#undef EDGE_X
  auto copy = [](const ProxyCounters::ByMethod& from, std::array<std::uint64_t, kMethodClasses>& to) {
    for (std::size_t i = 0; i < kMethodClasses; ++i) to[i] = from[i].load(std::memory_order_relaxed);
  };
  copy(counters_.requests_in_client, s.requests_in_client);
  copy(counters_.requests_in_core, s.requests_in_core);
  copy(counters_.requests_out_core, s.requests_out_core);
  copy(counters_.requests_out_flow, s.requests_out_flow);
  s.transaction_evictions = transactions_.evictions();
  s.log_suppressed = log_.suppressed_total();
  return s;
}

void ProxyState::count_status(int status) noexcept {
  ProxyCounters& k = counters_;
  bump(k.local_responses);
  switch (status) {
    case 200:
      bump(k.r200_options);
      break;
    case 400:
      bump(k.r400);
      break;
    case 403:
      bump(k.r403);
      break;
    case 404:
      bump(k.r404);
      break;
    case 408:
      bump(k.r408);
      break;
    case 416:
      bump(k.r416);
      break;
    case 420:
      bump(k.r420);
      break;
    case 421:
      bump(k.r421);
      break;
    case 430:
      bump(k.r430);
      break;
    case 439:
      bump(k.r439);
      break;
    case 483:
      bump(k.r483);
      break;
    case 500:
      bump(k.r500);
      break;
    case 503:
      bump(k.r503);
      break;
    default:
      break;
  }
}

void ProxyState::on_timer(Clock::time_point now, Network& net) {
  for (TransactionTable::Due& d : transactions_.poll(now)) {
    if (d.kind == TransactionTable::Due::Kind::retransmit) {
      if (net.send_to_flow(d.flow, std::move(d.bytes))) bump(counters_.retransmissions_to_clients);
      continue;
    }
    // Timer B/F fired with no answer from the UDP client: 408 to the core, once;
    // the flow closed before the client's final response: 430 (RFC 5626 §5.3), once.
    // The stored request carries our Via on top; the core must not see it.
    sip::Message req;
    std::string resp;
    if (sip::parse(d.bytes, req) != sip::Error::ok || req.method() == sip::Method::ack) continue;
    const sip::Tag tag = next_tag();
    sip::ResponseSpec spec;
    const int status = d.kind == TransactionTable::Due::Kind::flow_failed ? 430 : 408;
    spec.status = status;
    spec.to_tag = tag.view();
    if (sip::build_response(req, spec, resp) != sip::Error::ok) continue;
    sip::Message rm;
    if (sip::parse(resp, rm) != sip::Error::ok) continue;
    sip::Editor ed(rm);
    if (ed.remove_top_via() != sip::Error::ok) continue;
    std::string bytes;
    ed.serialize(bytes);
    count_status(status);
    if (!net.send_to_core(std::move(bytes))) bump(counters_.drop_answer_undeliverable);
    log(LogLevel::info, LogEvent::flow_failed,
        "status=" + std::to_string(status) + " flow=" + flow::to_string(d.flow), now);
  }
}

}  // namespace edge::net
