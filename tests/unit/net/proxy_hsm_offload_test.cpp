// The proxy with its HSM work off the I/O path, over a real SoftHSM key set behind the PKCS#11 fault
// shim (latency injected per C_Sign / C_Verify): parking, priority, admission control, the failed-token
// cache, flows that close while the HSM works, and a controlled restart with work in flight. Ordering is
// asserted by sequence and counts, never by wall-clock thresholds.
#include "proxy_test_support.h"

#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/net/token/hsm_outcome.h>
#include <edge/test/fault_shim.h>
#include <edge/test/softhsm_fixture.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace edge::net::testing {
namespace {

using sip::HeaderId;
using namespace std::chrono_literals;

constexpr const char* kSet = "flows";

// What the transport does with a parked message, made observable: it is kept
// until the test delivers it (on the test thread, as a worker would), and
// refused when its flow is gone, as the transport refuses it.
class TestRedelivery final : public Redelivery {
 public:
  explicit TestRedelivery(FakeNetwork& net) : net_(net) {}
  bool redeliver(ParkedMessage m) override {
    std::lock_guard lock(mu_);
    if (!m.from_core && m.flow.transport != Transport::udp && gone_.count(m.flow) != 0) return false;
    back_.push_back(std::move(m));
    cv_.notify_all();
    return true;
  }
  // Waits (bounded) until `n` parked messages came back; takes them in the order they came.
  std::vector<ParkedMessage> wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 20s, [&] { return back_.size() >= n; });
    std::vector<ParkedMessage> out(std::make_move_iterator(back_.begin()),
                                   std::make_move_iterator(back_.end()));
    back_.clear();
    return out;
  }
  std::size_t waiting() {
    std::lock_guard lock(mu_);
    return back_.size();
  }
  void flow_gone(const FlowKey& f) {
    std::lock_guard lock(mu_);
    gone_[f] = true;
    net_.close_flow(f);
  }

 private:
  FakeNetwork& net_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ParkedMessage> back_;
  std::unordered_map<FlowKey, bool> gone_;
};

class ParkingNetwork final : public FakeNetwork {
 public:
  std::shared_ptr<Redelivery> redelivery() override { return redelivery_; }
  TestRedelivery& parked() { return *redelivery_; }

 private:
  std::shared_ptr<TestRedelivery> redelivery_ = std::make_shared<TestRedelivery>(*this);
};

FlowKey tcp_client(int n) { return flow_of(Transport::tcp, "192.0.2.10", 5060, "203.0.113.5", 41000 + n); }
FlowKey tcp_client_at(const char* ip) { return flow_of(Transport::tcp, "192.0.2.10", 5060, ip, 41000); }
FlowKey udp_client(int n) { return flow_of(Transport::udp, "192.0.2.10", 5060, "198.51.100.7", 42000 + n); }

std::string register_from(const FlowKey& f, std::string_view call_id) {
  const bool udp = f.transport == Transport::udp;
  return crlf(
      fill("REGISTER sip:example.test{tp} SIP/2.0\n"
           "Via: SIP/2.0/{TP} 203.0.113.5:{port};branch=z9hG4bK-{cid};rport\n"
           "Contact: <sip:u@203.0.113.5:{port}{tp};ob>;+sip.instance=\"<urn:uuid:{cid}>\";reg-id=1\n"
           "Max-Forwards: 70\n"
           "To: <sip:u@example.test>\n"
           "From: <sip:u@example.test>;tag=f-{cid}\n"
           "Call-ID: {cid}\n"
           "CSeq: 1 REGISTER\n"
           "Supported: path, outbound\n"
           "Content-Length: 0\n\n",
           {{"tp", udp ? "" : ";transport=tcp"},
            {"TP", udp ? "UDP" : "TCP"},
            {"port", std::to_string(f.remote.port)},
            {"cid", std::string(call_id)}}));
}

// An in-dialog request from the core routed by a token (the Record-Route the client's INVITE got).
std::string core_bye(std::string_view token, std::string_view call_id) {
  return crlf(
      fill("BYE sip:u@203.0.113.5:41000;transport=tcp SIP/2.0\n"
           "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bK-core-{cid}\n"
           "Route: <sip:{tok}@10.0.0.1:5060;transport=tcp;lr>\n"
           "Max-Forwards: 69\n"
           "From: <sip:d@example.test>;tag=d1\n"
           "To: <sip:u@example.test>;tag=u1\n"
           "Call-ID: {cid}\n"
           "CSeq: 2 BYE\n"
           "Content-Length: 0\n\n",
           {{"tok", std::string(token)}, {"cid", std::string(call_id)}}));
}

// The same from a client: a token of another flow in its Route (what a forger sends).
std::string client_bye(const FlowKey& f, std::string_view token, std::string_view call_id) {
  return crlf(fill(
      "BYE sip:d@10.0.0.2 SIP/2.0\n"
      "Via: SIP/2.0/TCP 203.0.113.5:{port};branch=z9hG4bK-cl-{cid}\n"
      "Route: <sip:{tok}@192.0.2.10:5060;transport=tcp;lr>\n"
      "Max-Forwards: 70\n"
      "From: <sip:u@example.test>;tag=u1\n"
      "To: <sip:d@example.test>;tag=d1\n"
      "Call-ID: {cid}\n"
      "CSeq: 3 BYE\n"
      "Content-Length: 0\n\n",
      {{"tok", std::string(token)}, {"cid", std::string(call_id)}, {"port", std::to_string(f.remote.port)}}));
}

// A well-formed token of ours with a different tag: one base64url character of the tag changed.
std::string forged(const std::string& token, int n) {
  std::string t = token;
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  // The last characters are the tag; vary two of them so every n gives another tag.
  t[t.size() - 3] = kAlphabet[n % 64];
  t[t.size() - 4] = kAlphabet[(n / 64) % 64];
  if (t == token) t[t.size() - 5] = t[t.size() - 5] == 'A' ? 'B' : 'A';  // never the real tag
  return t;
}

class ProxyHsmOffload : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = std::make_unique<hsm::Hsm>(shim_.config());
    hsm_->keysets().create(kSet, 3);
    mac_ = hsm_->mac_for(kSet);
    mac_->refresh();
  }
  void TearDown() override {
    shim_.clear();
    proxy_.reset();
    state_.reset();  // stops the queue's threads first
  }
  // A process: the state (queue with these settings), a codec, the rules.
  void start(flow::HsmWorkConfig work) {
    ProxyStateOptions o;
    o.hsm_work = work;
    state_ = std::make_shared<ProxyState>(o);
    codec_ = std::make_shared<flow::TokenCodec>(mac_);
    proxy_ = std::make_shared<EdgeProxy>(state_, lab_config(), codec_);
  }
  void deliver(const FlowKey& f, bool from_core, const std::string& text) {
    Inbound in{f, from_core, text, {}};
    in.registered = registered_.count(f) != 0;
    proxy_->on_message(in, net_);
  }
  // The transport's half: a parked message delivered again to the current rules.
  void deliver(const ParkedMessage& m) {
    Inbound in{m.flow, m.from_core, m.bytes, m.received};
    in.registered = m.registered;
    in.hsm = m.outcome.get();
    proxy_->on_message(in, net_);
  }
  void deliver_all(std::size_t n) {
    for (const auto& m : net_.parked().wait_for(n)) deliver(m);
  }
  // Registers f (mint with the shim quiet) and returns its token.
  std::string registered(const FlowKey& f) {
    net_.add_flow(f);
    deliver(f, false, register_from(f, "reg-" + std::to_string(f.remote.port)));
    deliver_all(1);
    Out reg(net_.take().bytes);
    registered_[f] = true;
    return reg.route_user(HeaderId::path, 0);
  }
  // Waits (bounded) until the queue has `n` jobs inside the HSM.
  void wait_running(std::size_t n) {
    for (int i = 0; i < 2000 && state_->hsm_work_stats().running_now < n; ++i)
      std::this_thread::sleep_for(1ms);
    ASSERT_EQ(state_->hsm_work_stats().running_now, n);
  }
  hsm::OpCountersSnapshot ops() const { return hsm_->counters().snapshot(); }
  std::vector<FakeNetwork::Sent> take_all() {
    auto s = std::move(net_.sent);
    net_.sent.clear();
    return s;
  }

  test::SoftHsmToken token_;
  test::FaultShim shim_{token_};
  std::unique_ptr<hsm::Hsm> hsm_;
  std::shared_ptr<hsm::KeySetMac> mac_;
  std::shared_ptr<ProxyState> state_;
  std::shared_ptr<flow::TokenCodec> codec_;
  std::shared_ptr<EdgeProxy> proxy_;
  ParkingNetwork net_;
  std::unordered_map<FlowKey, bool> registered_;
};

TEST_F(ProxyHsmOffload, ASlowMintDoesNotDelayACacheHitOnTheSameWorker) {
  start({.threads = 1});
  const FlowKey bob = tcp_client(1);
  const std::string bob_token = registered(bob);

  shim_.set("C_Sign delay_ms=400\nC_Verify delay_ms=400");
  const FlowKey carol = tcp_client(2);
  net_.add_flow(carol);
  deliver(carol, false, register_from(carol, "carol-reg"));  // needs a mint: parked
  EXPECT_TRUE(net_.sent.empty());
  EXPECT_EQ(state_->stats().hsm_parked, 2u);  // bob's registration and carol's
  wait_running(1);

  // While carol's mint sits in the HSM, the core's BYE for bob is a cache hit:
  // routed at once, on this thread, and carol's REGISTER still waits.
  deliver(kCore, true, core_bye(bob_token, "bye-bob"));
  ASSERT_EQ(net_.sent.size(), 1u);
  EXPECT_EQ(net_.sent[0].flow, bob);
  EXPECT_EQ(net_.parked().waiting(), 0u);
  EXPECT_EQ(state_->hsm_work_stats().running_now, 1u);

  deliver_all(1);
  const auto out = take_all();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[1].to_core);
  EXPECT_FALSE(Out(out[1].bytes).route_user(HeaderId::path, 0).empty());
  // The job counts its resumption after handing the message back: wait for it to end.
  ASSERT_TRUE(state_->hsm_work()->drain(20s));
  EXPECT_EQ(state_->stats().mints_hsm, 2u);
  EXPECT_EQ(state_->stats().hsm_resumed, 2u);
}

TEST_F(ProxyHsmOffload, WorkBeyondTheQueueBoundGets503WithRetryAfterOnAStreamAndIsDroppedOnUdp) {
  start({.threads = 1, .max_queued = 1});
  shim_.set("C_Sign delay_ms=300");
  const FlowKey a = tcp_client(1), b = tcp_client(2), c = tcp_client(3);
  const FlowKey d = udp_client(4);
  for (const FlowKey& f : {a, b, c, d}) net_.add_flow(f);
  deliver(a, false, register_from(a, "a"));
  wait_running(1);                           // a is in the HSM
  deliver(b, false, register_from(b, "b"));  // b waits: the queue is full now
  deliver(c, false, register_from(c, "c"));
  Out refused(net_.take().bytes);
  EXPECT_EQ(refused.status(), 503);
  EXPECT_FALSE(refused.header("Retry-After").empty());
  deliver(d, false, register_from(d, "d"));  // UDP: no answer (no reflection)
  EXPECT_TRUE(net_.sent.empty());
  EXPECT_EQ(state_->stats().hsm_refused_queue_full, 2u);
  EXPECT_EQ(state_->stats().drop_hsm_busy, 1u);

  deliver_all(2);  // a and b come back minted and go to the core
  auto out = take_all();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].to_core && out[1].to_core);

  // d's retransmission is a new try (the refused attempt was forgotten), not absorbed.
  shim_.clear();
  deliver(d, false, register_from(d, "d"));
  deliver_all(1);
  ASSERT_EQ(net_.sent.size(), 1u);
  EXPECT_TRUE(net_.sent[0].to_core);
  EXPECT_EQ(state_->stats().retransmissions_absorbed, 0u);
}

TEST_F(ProxyHsmOffload, AForgedTokenFloodFromOneSourceSpendsAtMostItsBudget) {
  start({.threads = 2, .verify_per_second = 0, .verify_burst = 5});
  const std::string token = registered(tcp_client(1));
  const FlowKey mallory = tcp_client_at("198.51.100.66");
  net_.add_flow(mallory);
  const auto before = ops();
  constexpr int kFlood = 60;
  for (int i = 0; i < kFlood; ++i)
    deliver(mallory, false, client_bye(mallory, forged(token, i + 1), "f" + std::to_string(i)));
  deliver_all(5);
  const auto out = take_all();
  ASSERT_EQ(out.size(), static_cast<std::size_t>(kFlood));
  int r403 = 0, r503 = 0;
  for (const auto& s : out) {
    EXPECT_EQ(s.flow, mallory);
    const int st = Out(s.bytes).status();
    r403 += st == 403;
    r503 += st == 503;
  }
  EXPECT_EQ(r403, 5);
  EXPECT_EQ(r503, kFlood - 5);
  EXPECT_EQ(ops().verify - before.verify, 5u);  // the budget, and not one HSM call more
  EXPECT_EQ(state_->stats().hsm_refused_budget, static_cast<std::uint64_t>(kFlood - 5));

  // Another source is not touched by mallory's spent budget; the core is never budgeted.
  const FlowKey other = tcp_client_at("198.51.100.67");
  net_.add_flow(other);
  deliver(other, false, client_bye(other, forged(token, 999), "other"));
  deliver_all(1);
  EXPECT_EQ(Out(net_.take().bytes).status(), 403);
}

TEST_F(ProxyHsmOffload, OneForgedTokenRepeatedCostsOneHsmCall) {
  start({.threads = 1});
  const std::string token = registered(tcp_client(1));
  const std::string bad = forged(token, 7);
  const auto before = ops();
  deliver(kCore, true, core_bye(bad, "rep-0"));
  deliver_all(1);
  EXPECT_EQ(Out(net_.take().bytes).status(), 403);
  for (int i = 1; i <= 20; ++i) {
    deliver(kCore, true, core_bye(bad, "rep-" + std::to_string(i)));
    EXPECT_EQ(Out(net_.take().bytes).status(), 403) << i;  // answered inline: no park
  }
  EXPECT_EQ(ops().verify - before.verify, 1u);
  // The message that waited for the HSM answered from the failed-token cache
  // when it came back, then each repetition.
  EXPECT_EQ(codec_->stats().refused_by_failed_cache, 21u);
}

TEST_F(ProxyHsmOffload, CoreAndRegisteredWorkIsServedBeforeUnregisteredAndShedsItWhenFull) {
  start({.threads = 1, .max_queued = 2});
  const FlowKey bob = tcp_client(1);
  const std::string bob_token = registered(bob);
  codec_->cache().clear();  // the core's token now needs the HSM (as after a process restart)

  shim_.set("C_Sign delay_ms=200\nC_Verify delay_ms=200");
  const FlowKey u0 = tcp_client(10), u1 = tcp_client(11), u2 = tcp_client(12);
  for (const FlowKey& f : {u0, u1, u2}) net_.add_flow(f);
  deliver(u0, false, register_from(u0, "u0"));  // occupies the one HSM thread
  wait_running(1);
  deliver(u1, false, register_from(u1, "u1"));
  deliver(u2, false, register_from(u2, "u2"));            // the queue is full of unregistered work
  deliver(kCore, true, core_bye(bob_token, "core-bye"));  // sheds u2, queued ahead of u1
  EXPECT_EQ(state_->hsm_work_stats().shed, 1u);
  EXPECT_EQ(state_->hsm_work_stats().queued_now, 2u);

  // u2 came back at once, shed: 503 on its stream.
  auto back = net_.parked().wait_for(1);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].flow, u2);
  deliver(back[0]);
  Out shed(net_.take().bytes);
  EXPECT_EQ(shed.status(), 503);
  EXPECT_EQ(state_->stats().hsm_shed, 1u);

  // Then u0 (already running), the core's BYE, and u1 last.
  std::vector<FlowKey> order;
  for (int i = 0; i < 3; ++i) {
    for (auto& m : net_.parked().wait_for(1)) {
      order.push_back(m.flow);
      deliver(m);
    }
  }
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], u0);
  EXPECT_EQ(order[1], kCore);
  EXPECT_EQ(order[2], u1);
  const auto out = take_all();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].flow, bob);  // the BYE went over bob's flow
}

TEST_F(ProxyHsmOffload, WorkThatCompletesAfterItsFlowClosedIsAnswered430OrDroppedNeverSentElsewhere) {
  start({.threads = 1});
  const FlowKey bob = tcp_client(1);
  const std::string bob_token = registered(bob);
  codec_->cache().clear();
  shim_.set("C_Sign delay_ms=200\nC_Verify delay_ms=200");

  // The core's request for bob parks; bob's connection closes meanwhile: 430 to the core.
  deliver(kCore, true, core_bye(bob_token, "late"));
  wait_running(1);
  net_.parked().flow_gone(bob);
  deliver_all(1);
  auto out = take_all();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].to_core);
  EXPECT_EQ(Out(out[0].bytes).status(), 430);

  // A client's REGISTER parks; its own connection closes: nobody to answer, counted.
  const FlowKey carol = tcp_client(2);
  net_.add_flow(carol);
  deliver(carol, false, register_from(carol, "carol"));
  wait_running(1);
  net_.parked().flow_gone(carol);
  ASSERT_TRUE(state_->hsm_work()->drain(20s));
  EXPECT_EQ(state_->stats().hsm_resume_dropped, 1u);
  EXPECT_TRUE(net_.sent.empty());
}

TEST_F(ProxyHsmOffload, AControlledRestartWithHsmWorkInFlightLosesNothing) {
  start({.threads = 2});
  shim_.set("C_Sign delay_ms=200");
  std::vector<FlowKey> flows;
  for (int i = 0; i < 4; ++i) {
    flows.push_back(tcp_client(20 + i));
    net_.add_flow(flows.back());
    deliver(flows.back(), false, register_from(flows.back(), "rs" + std::to_string(i)));
  }
  EXPECT_TRUE(net_.sent.empty());
  // The apply: new rules (and codec, as a key-set change builds) over the same state.
  codec_ = std::make_shared<flow::TokenCodec>(mac_);
  proxy_ = std::make_shared<EdgeProxy>(state_, lab_config(), codec_);
  deliver_all(4);  // back to the new rules
  const auto out = take_all();
  ASSERT_EQ(out.size(), 4u);
  for (const auto& s : out) {
    EXPECT_TRUE(s.to_core);
    EXPECT_FALSE(Out(s.bytes).route_user(HeaderId::path, 0).empty());
  }
  // The flows' tokens were minted once each, by the work that ran across the swap.
  ASSERT_TRUE(state_->hsm_work()->drain(20s));
  EXPECT_EQ(state_->stats().mints_hsm, 4u);
  EXPECT_EQ(state_->stats().hsm_resumed, 4u);
  EXPECT_EQ(state_->stats().hsm_resume_dropped, 0u);
}

}  // namespace
}  // namespace edge::net::testing
