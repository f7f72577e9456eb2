// The RFC 5626 edge-proxy rules as a MessageHandler: Path/Record-Route with flow tokens, token routing,
// response routing.
#pragma once

#include "edge/net/flow/token_codec.h"
#include "edge/net/proxy/config.h"
#include "edge/net/proxy/log.h"
#include "edge/net/proxy/stats.h"
#include "edge/net/proxy/transactions.h"
#include "edge/net/proxy/via_branch.h"
#include "edge/net/sip/error.h"
#include "edge/net/transport/seam.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace edge::sip {
class Message;
}

namespace edge::net {

// Construction (the daemon's composition root):
//
//   auto mac   = hsm.mac_for(cfg.key_set);                       // hsm::KeySetMac
//   auto codec = std::make_shared<flow::TokenCodec>(mac);
//   auto proxy = std::make_shared<EdgeProxy>(cfg, codec, sink);   // validates cfg, throws
//   Transports transports(transport_cfg, proxy);                  // the Outbound; calls on_message
//   transports.start();
//   a steady_timer on one worker, every 100 ms: proxy->on_timer(Clock::now(), transports);
//   controlled restart: transports.pause(); transports.set_handler(new_proxy); transports.resume();
//
// ProxyConfig::client_side / core_side must name the addresses the listeners and
// the core connection are bound to (what clients and the core send to); the
// transport's FlowKeys carry the bound addresses.
//
// The proxy owns no socket and no thread. It reaches the network only through the
// Outbound it is handed: client flows (send_to_flow) and the core (send_to_core);
// it never resolves or connects to a host named in a message.
//
// Thread-safe: on_message may run concurrently on every worker. Per message it
// parses once (zero-copy), edits by splicing, and serializes once into the string
// handed to Outbound; no HSM call when the flow's token is cached.
class EdgeProxy final : public MessageHandler {
 public:
  // codec may be null only when config.flow_token_security is false.
  // Throws std::invalid_argument on an unusable configuration.
  EdgeProxy(ProxyConfig config, std::shared_ptr<flow::TokenCodec> codec, LogSink log = {});
  ~EdgeProxy() override;
  EdgeProxy(const EdgeProxy&) = delete;
  EdgeProxy& operator=(const EdgeProxy&) = delete;

  void on_message(const Inbound& in, Outbound& out) override;
  void on_flow_closed(const FlowKey& flow) override;

  // Drives retransmission toward UDP clients and the 408s for requests they never
  // answered. Call periodically (T1/5 is plenty); cheap when nothing is due.
  void on_timer(Clock::time_point now, Outbound& out);

  ProxyStats stats() const noexcept;
  const ProxyConfig& config() const noexcept { return config_; }
  // Transactions still remembered (retransmission absorption, UDP retransmission,
  // 408 timers). After a controlled restart the daemon keeps calling on_timer()
  // on the previous proxy until this reaches 0, so nothing pending is forgotten.
  std::size_t pending_transactions() const { return transactions_.size(); }

 private:
  struct Counters;
  struct Ctx;

  void on_request(Ctx& c);
  void on_response(Ctx& c);
  void request_from_client(Ctx& c);
  void request_from_core(Ctx& c);
  void forward_to_core(Ctx& c, bool dialog_forming, bool outbound_register);
  void forward_to_flow(Ctx& c, const FlowKey& flow, bool dialog_forming);
  // Verifies a token of one of our Route values; answers 403 / 503 itself and
  // returns false when it does not name a flow.
  bool check_token(Ctx& c, std::string_view token, const flow::FlowToken* own, FlowKey& flow);
  void reply(Ctx& c, int status, std::string_view reason = {}, std::string_view extra_name = {},
             std::string_view extra_value = {});
  void send_reply_bytes(Ctx& c, int status, std::string bytes);
  void edit_failed(Ctx& c, sip::Error e);
  void unparseable(const Inbound& in, Outbound& out, const sip::Message& m, int error_status);
  void log(LogLevel level, LogEvent event, std::string_view fields, Clock::time_point now);
  void count_status(int status) noexcept;

  ProxyConfig config_;
  std::shared_ptr<flow::TokenCodec> codec_;
  std::unique_ptr<Counters> counters_;
  RateLimitedLog log_;
  BranchCodec branches_;
  TransactionTable transactions_;
  std::uint64_t seed_;  // stateless branch and To-tag seed, random per process start
  std::atomic<std::uint64_t> tag_counter_{0};
  std::string retry_after_;
};

}  // namespace edge::net
