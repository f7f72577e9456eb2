// The RFC 5626 edge-proxy rules as a MessageHandler: Path/Record-Route with flow tokens, token routing,
// response routing.
#pragma once

#include "edge/net/proxy/config.h"
#include "edge/net/proxy/proxy_state.h"
#include "edge/net/sip/error.h"
#include "edge/net/token/token_codec.h"
#include "edge/net/transport/message_handler.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace edge::sip {
class Editor;
class Message;
}  // namespace edge::sip

namespace edge::net {

// The rules half of the proxy: an EdgeProxy is immutable (configuration and
// token codec) and is replaced at every controlled restart; what must outlive
// the restart (transactions, branch seed, counters, log limiter) lives in the
// ProxyState every EdgeProxy of the process shares.
//
// Construction (the daemon's composition root):
//
//   auto state = std::make_shared<ProxyState>(ProxyStateOptions{}, sink);  // once per process
//   auto mac   = hsm.mac_for(cfg.key_set);                                  // hsm::KeySetMac
//   auto codec = std::make_shared<flow::TokenCodec>(mac);
//   auto proxy = std::make_shared<EdgeProxy>(state, cfg, codec);            // validates cfg, throws
//   Transports transports(transport_cfg, proxy);  // calls on_message, and on_timer on one worker
//   transports.start();
//   controlled restart: transports.pause();
//                       transports.set_handler(std::make_shared<EdgeProxy>(state, next_cfg, next_codec));
//                       transports.resume();
//
// ProxyConfig::client_side / core_side must name the addresses the listeners and
// the core connection are bound to (what clients and the core send to); the
// transport's FlowKeys carry the bound addresses.
//
// The proxy owns no socket and no thread. It reaches the network only through the
// Network it is handed: client flows (send_to_flow) and the core (send_to_core);
// it never resolves or connects to a host named in a message.
//
// Thread-safe: on_message may run concurrently on every worker. Per message it
// parses once (zero-copy), edits by splicing, and serializes once into the string
// handed to Network; no HSM call when the flow's token is cached.
//
// Never blocks on the HSM when the Network offers a Redelivery and the state an
// HsmWorkQueue (edged): a mint or a verify that no cache answers parks the
// message (its bytes copied once) and submits the HSM call to the queue, whose
// thread makes it and hands the message back to the transport; the transport
// delivers it again on its flow's worker, and this time the answer is there.
// Admission control sits in front (source budgets, the queue bound, priority of
// the core and of registered flows); what it refuses is answered 503 with
// Retry-After on a stream or to the core, and dropped on UDP (no reflection).
// Without a queue or a Redelivery the codec's HSM calls run inline and may
// block (flow::TokenCodec says how long).
class EdgeProxy final : public MessageHandler {
 public:
  // codec may be null only when config.flow_token_security is false.
  // Throws std::invalid_argument on an unusable configuration or a null state.
  EdgeProxy(std::shared_ptr<ProxyState> state, ProxyConfig config, std::shared_ptr<flow::TokenCodec> codec);
  ~EdgeProxy() override;
  EdgeProxy(const EdgeProxy&) = delete;
  EdgeProxy& operator=(const EdgeProxy&) = delete;

  void on_message(const Inbound& in, Network& out) override;
  void on_flow_closed(const FlowKey& flow) override;
  // The shared state's transaction timers (ProxyState::on_timer).
  void on_timer(Clock::time_point now, Network& net) override;

  // The shared state's counters: every EdgeProxy of one state reports the same.
  ProxyStats stats() const noexcept { return state_->stats(); }
  const ProxyConfig& config() const noexcept { return config_; }
  const std::shared_ptr<ProxyState>& state() const noexcept { return state_; }

 private:
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
  // The verify / mint answer without blocking: true with the result set, or
  // false when the message was parked for the HSM or refused (answered).
  bool verify_now(Ctx& c, std::string_view token, const flow::FlowToken* own, flow::VerifyResult& v);
  bool mint_now(Ctx& c, const std::shared_ptr<flow::FlowToken>& ft, flow::MintResult& mr);
  bool offloading(Ctx& c);
  void park(Ctx& c, flow::HsmWorkKind kind, std::string_view token, std::shared_ptr<flow::FlowToken> ft);
  void hsm_refused(Ctx& c, flow::HsmWorkKind kind, const char* why);
  void reply(Ctx& c, int status, std::string_view reason = {}, std::string_view extra_name = {},
             std::string_view extra_value = {});
  void send_reply_bytes(Ctx& c, int status, std::string bytes);
  void edit_failed(Ctx& c, sip::Error e);
  bool finish_edit(Ctx& c, sip::Editor& ed, sip::Error e, std::string& bytes);
  void unparseable(const Inbound& in, Network& out, const sip::Message* m, int error_status);
  void log(LogLevel level, LogEvent event, std::string_view fields, Clock::time_point now);
  // A Via of ours toward the core (our core-side sent-by, a branch we made for a client's request).
  bool been_to_core_through_us(const sip::Message& m) const noexcept;
  // The top Via's sent-by is the core's own address (ProxyConfig::core_address).
  bool via_names_core(const sip::Message& m) const noexcept;

  const std::shared_ptr<ProxyState> state_;
  ProxyCounters* const counters_;  // state_->counters()
  ProxyConfig config_;
  std::shared_ptr<flow::TokenCodec> codec_;
  std::string retry_after_;
};

}  // namespace edge::net
