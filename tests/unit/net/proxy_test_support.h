// Shared fixture for the edge-proxy tests: a recording fake of our own Network seam, flows, and message
// helpers.
#pragma once

#include <edge/net/proxy/edge_proxy.h>
#include <edge/net/sip/headers.h>
#include <edge/net/sip/message.h>
#include <edge/net/sip/response.h>
#include <edge/net/sip/uri.h>
#include <edge/net/token/token_codec.h>
#include <edge/net/transport/message_handler.h>

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "token_test_oracle.h"

namespace edge::net::testing {

using flow::Endpoint;
using flow::FlowKey;
using flow::Transport;

// Records what the proxy sends, and plays the flow table: flows are alive until
// closed, each with its FlowToken, as the transport layer keeps them.
class FakeNetwork : public Network {
 public:
  struct Sent {
    bool to_core = false;
    FlowKey flow;  // when !to_core
    std::string bytes;
  };

  void add_flow(const FlowKey& f) { flows_[f] = std::make_shared<flow::FlowToken>(f); }
  void close_flow(const FlowKey& f) { flows_.erase(f); }

  bool send_to_flow(const FlowKey& f, std::string bytes) override {
    if (send_hook && !send_hook(f)) return false;
    if (!flows_.count(f)) return false;
    sent.push_back({false, f, std::move(bytes)});
    return true;
  }
  bool send_to_core(std::string bytes) override {
    if (!core_up) return false;
    sent.push_back({true, {}, std::move(bytes)});
    return true;
  }
  std::uint64_t core_link_epoch() const noexcept override { return core_epoch; }
  bool flow_alive(const FlowKey& f) const override { return flows_.count(f) != 0; }
  std::shared_ptr<flow::FlowToken> flow_token(const FlowKey& f) override {
    auto it = flows_.find(f);
    return it == flows_.end() ? nullptr : it->second;
  }
  void mark_registered(const FlowKey& f, std::chrono::seconds t) override { registered.emplace_back(f, t); }

  // Takes the single message sent since the last take(); fails the test otherwise.
  Sent take() {
    EXPECT_EQ(sent.size(), 1u) << "expected exactly one message out";
    if (sent.empty()) return {};
    Sent s = std::move(sent.front());
    sent.clear();
    return s;
  }

  std::vector<Sent> sent;
  std::vector<std::pair<FlowKey, std::chrono::seconds>> registered;
  bool core_up = true;
  std::uint64_t core_epoch = 0;  // Network::core_link_epoch: bump it when the core link goes down or up
  // Runs first in send_to_flow; false makes that send fail (a flow closing under it).
  std::function<bool(const FlowKey&)> send_hook;

 private:
  std::unordered_map<FlowKey, std::shared_ptr<flow::FlowToken>> flows_;
};

// A message the proxy sent, parsed, with the accessors tests want.
class Out {
 public:
  // complete = false: an answer the edge built from a request that lacked headers.
  explicit Out(std::string bytes, bool complete = true) : bytes_(std::move(bytes)) {
    const sip::Error e = sip::parse(bytes_, m_, {});
    if (complete) {
      EXPECT_EQ(e, sip::Error::ok) << sip::reason(e) << "\n" << bytes_;
    }
  }
  const sip::Message& msg() const { return m_; }
  const std::string& text() const { return bytes_; }
  int status() const { return m_.status(); }
  // Every value of a list header, top first (one element per entry).
  std::vector<std::string> values(sip::HeaderId id) const {
    std::vector<std::string> v;
    sip::ValueIterator it(m_, id);
    sip::HeaderValue hv;
    while (it.next(hv)) v.emplace_back(hv.text);
    return v;
  }
  std::string header(std::string_view name) const {
    for (const sip::Header& h : m_.headers())
      if (h.name == name) return std::string(h.value);
    return {};
  }
  sip::Via via(std::size_t i) const {
    sip::Via v;
    EXPECT_EQ(sip::via_at(m_, i, v), sip::Error::ok);
    return v;
  }
  // The URI of the index-th value of a Route-like header.
  std::string route_uri(sip::HeaderId id, std::size_t i) const {
    sip::RouteValue rv;
    if (sip::route_at(m_, id, i, rv) != sip::Error::ok) return {};
    return std::string(rv.addr.uri);
  }
  std::string route_user(sip::HeaderId id, std::size_t i) const {
    sip::RouteValue rv;
    if (sip::route_at(m_, id, i, rv) != sip::Error::ok) return {};
    return std::string(rv.uri.user);
  }

 private:
  std::string bytes_;
  sip::Message m_;
};

inline FlowKey flow_of(Transport t, const char* local, std::uint16_t lport, const char* remote,
                       std::uint16_t rport) {
  return {t, *Endpoint::parse(local, lport), *Endpoint::parse(remote, rport)};
}

// The lab picture: clients reach 192.0.2.10 (and 2001:db8::10); the core (10.0.0.2)
// reaches us on 10.0.0.1 over TCP.
inline const FlowKey kAlice = flow_of(Transport::udp, "192.0.2.10", 5060, "198.51.100.7", 5062);
inline const FlowKey kBob = flow_of(Transport::tcp, "192.0.2.10", 5060, "203.0.113.5", 40312);
inline const FlowKey kCarol = flow_of(Transport::tcp, "2001:db8::10", 5060, "2001:db8:1::7", 50000);
inline const FlowKey kCore = flow_of(Transport::tcp, "10.0.0.1", 5060, "10.0.0.2", 5060);

inline ProxyConfig lab_config() {
  ProxyConfig c;
  c.client_side = {{Transport::udp, "192.0.2.10", 5060},
                   {Transport::tcp, "192.0.2.10", 5060},
                   {Transport::tcp, "2001:db8::10", 5060},
                   {Transport::tls, "192.0.2.10", 5061}};
  c.core_side = {Transport::tcp, "10.0.0.1", 5060};
  c.key_set = "flows";
  return c;
}

// Replaces every "\n" not preceded by "\r" with CRLF: messages read naturally in tests.
inline std::string crlf(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 64);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) o += '\r';
    o += s[i];
  }
  return o;
}

// Replaces every "{key}" by its value.
inline std::string fill(std::string text, const std::vector<std::pair<std::string, std::string>>& vars) {
  for (const auto& [k, v] : vars) {
    const std::string pat = "{" + k + "}";
    for (std::size_t p = text.find(pat); p != std::string::npos; p = text.find(pat, p + v.size()))
      text.replace(p, pat.size(), v);
  }
  return text;
}

// A proxy over a deterministic MacOracle (pure-logic tests) and a fake Network
// with alice (UDP), bob (TCP) and carol (TCP over IPv6) connected.
class ProxyFixture : public ::testing::Test {
 protected:
  void SetUp() override { make(lab_config()); }

  // A new process: new ProxyState, key oracle, codec and rules, the three flows.
  void make(ProxyConfig cfg, ProxyStateOptions options = {}) {
    proxy_.reset();
    state_ =
        std::make_shared<ProxyState>(options, [this](LogLevel, std::string_view ev, std::string_view fields) {
          log_.push_back(std::string(ev) + " " + std::string(fields));
        });
    oracle_ = std::make_shared<flow::testing::TestOracle>();
    codec_ = std::make_shared<flow::TokenCodec>(oracle_);
    swap_rules(std::move(cfg));
    out_ = FakeNetwork{};
    for (const FlowKey& f : {kAlice, kBob, kCarol}) out_.add_flow(f);
  }
  // A controlled restart: new rules over the same ProxyState (and codec), as
  // edged's front end builds them at an apply; flows stay.
  void swap_rules(ProxyConfig cfg) {
    config_ = std::move(cfg);
    proxy_ = std::make_unique<EdgeProxy>(state_, config_, config_.flow_token_security ? codec_ : nullptr);
  }

  void from_client(const FlowKey& f, const std::string& text) {
    Inbound in{f, false, text, now_};
    proxy_->on_message(in, out_);
  }
  void from_core(const std::string& text) {
    Inbound in{kCore, true, text, now_};
    proxy_->on_message(in, out_);
  }
  // The flow's token, as the proxy puts it in Path / Record-Route.
  std::string token_of(const FlowKey& f) {
    auto ft = out_.flow_token(f);
    return std::string(ft->get(*codec_).token.view());
  }

  ProxyConfig config_;
  std::shared_ptr<flow::testing::TestOracle> oracle_;
  std::shared_ptr<flow::TokenCodec> codec_;
  std::shared_ptr<ProxyState> state_;
  std::unique_ptr<EdgeProxy> proxy_;
  FakeNetwork out_;
  std::vector<std::string> log_;
  Clock::time_point now_ = Clock::time_point{} + std::chrono::hours(1);
};

// ---- realistic messages -------------------------------------------------------------------

// baresip-style outbound REGISTER over TCP (RFC 5626 §4.2: instance, reg-id, Supported).
inline std::string register_tcp(std::string_view extra_via = {},
                                std::string_view supported = "gruu, outbound, path",
                                std::string_view cseq = "38122") {
  const std::string s =
      "REGISTER sip:example.test;transport=tcp SIP/2.0\n"
      "{extra}Via: SIP/2.0/TCP 203.0.113.5:40312;branch=z9hG4bK3f1c8e2a7b5d{cseq};rport;alias;keep\n"
      "Contact: <sip:bob@203.0.113.5:40312;transport=tcp;ob>;expires=60;"
      "+sip.instance=\"<urn:uuid:2e7d5a0c-8c3b-4c66-9f1e-3b4c0f7b8a11>\";reg-id=1\n"
      "Max-Forwards: 70\n"
      "To: <sip:bob@example.test>\n"
      "From: <sip:bob@example.test>;tag=c6a5b7f3e1d2a4b8\n"
      "Call-ID: 8a1c3e5f7b9d2f4a\n"
      "CSeq: {cseq} REGISTER\n"
      "{supported}"
      "Content-Length: 0\n\n";
  return crlf(fill(
      s, {{"extra", std::string(extra_via)},
          {"cseq", std::string(cseq)},
          {"supported", supported.empty() ? std::string() : "Supported: " + std::string(supported) + "\n"}}));
}

// What the next hop answers to a request it received (`request` as it arrived
// there): all Vias copied, To tagged, plus extra headers.
inline std::string answer(const std::string& request, int status, std::vector<sip::ExtraHeader> extra = {}) {
  sip::Message m;
  EXPECT_EQ(sip::parse(request, m), sip::Error::ok);
  sip::ResponseSpec spec;
  spec.status = status;
  spec.to_tag = "uas-tag-1";
  spec.extra = extra;
  std::string out;
  EXPECT_EQ(sip::build_response(m, spec, out), sip::Error::ok);
  return out;
}

}  // namespace edge::net::testing
