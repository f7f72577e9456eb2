// Issue 17, "When the core is down or slow" and "A flow dies while a request to it is pending": a real
// Kamailio core stopped (SIGSTOP) and killed (SIGKILL), then back; a client's flow closed under an INVITE.
#include <signal.h>

#include <chrono>
#include <ostream>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// core.keepalive_interval_ms / core.keepalive_timeout_ms of these tests: a core
// that stops answering is noticed within their sum (docs/operations.md, "When the core is down").
constexpr milliseconds kPing{300};
constexpr milliseconds kPongTimeout{300};

void expect_from_edge(const SipMessage& r) {
  EXPECT_NE(r.header("Server"), std::optional<std::string>(kCoreServer))
      << r.summary() << " came from the core, not from the edge";
}

class CoreFailure : public EdgeTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.extra = {{"core.keepalive_interval_ms", std::to_string(kPing.count())},
               {"core.keepalive_timeout_ms", std::to_string(kPongTimeout.count())}};
    return o;
  }
  // A new Kamailio on the same port, with the same (aliasing) configuration.
  void restart_core() {
    const KamailioOptions o = core_->options();
    core_.reset();
    core_ = std::make_unique<KamailioProcess>(o);
  }
  bool core_up(bool up, milliseconds within) {
    return wait_status(
        [up](const EdgedStatus& s) { return s.text("core_connected") == (up ? "true" : "false"); }, within);
  }
};

// RFC 5626 §4.4.1 toward the core: Kamailio answers the edge's CRLFCRLF pings
// (the link stays up round after round); a core that hangs (every process
// stopped, its kernel still holding the connection) is noticed within
// keepalive_interval + keepalive_timeout, and while it hangs requests get 503
// with Retry-After from the edge instead of silence. After it wakes, calls flow
// and the request refused meanwhile never reaches anybody.
TEST_F(CoreFailure, AHungCoreIsNoticedWithinTheKeepAliveBoundAndRequestsGet503) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  std::this_thread::sleep_for(5 * kPing);  // about five ping rounds against the real core
  EdgedStatus s = edge_->status();
  ASSERT_EQ(s.number("core_keepalive_timeouts"), 0u) << "Kamailio did not answer the CRLF pings";
  ASSERT_EQ(s.number("core_disconnects"), 0u);

  core_->signal_group(SIGSTOP);
  const auto stopped = steady_clock::now();
  const bool noticed = core_up(false, kPing + kPongTimeout + milliseconds(1500));  // + status polling
  const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - stopped);
  if (!noticed) core_->signal_group(SIGCONT);
  ASSERT_TRUE(noticed) << "a hung core was not noticed";
  EXPECT_GE(edge_->status().number("core_keepalive_timeouts"), 1u);
  ::testing::Test::RecordProperty("hung_core_noticed_ms", static_cast<int>(took.count()));

  TestUa& bob = ua("bob");
  bob.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  const SipMessage stale = bob.make_invite(alice.aor());
  bob.send(stale);
  const SipMessage r = bob.receive_response("INVITE", Millis(2000));
  core_->signal_group(SIGCONT);
  EXPECT_EQ(r.status(), 503) << r.summary();
  EXPECT_TRUE(r.header("Retry-After").has_value()) << r.summary();
  expect_from_edge(r);
  bob.send(TestUa::make_ack_for_failure(stale, r));

  // The core wakes: the link comes back once it answers a ping; calls flow.
  ASSERT_TRUE(core_up(true, milliseconds(10000)));
  ASSERT_EQ(alice.register_with().status(), 200);  // over the new core link (Kamailio's TCP alias)
  const Call c = call(bob, alice);
  EXPECT_EQ(c.invite_received.header("Call-ID"), c.invite_sent.header("Call-ID"));
  const auto more = alice.try_receive(Millis(1000));
  EXPECT_FALSE(more.has_value()) << "a stale message reached alice: " << more->summary();
}

// RFC 3261 §16.9: the core dies (SIGKILL, every process): a request gets 503
// with Retry-After from the edge at once, over TCP and over UDP. After a new
// core comes up, traffic flows and nothing sent while it was down is delivered.
TEST_F(CoreFailure, AKilledCoreGets503AtOnceAndNothingStaleAfterItReturns) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& bob = ua("bob");
  bob.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  TestUa& carol = ua("carol");
  carol.connect(Transport::udp, edge_->endpoint(Transport::udp));

  core_->signal_group(SIGKILL);
  ASSERT_TRUE(core_up(false, milliseconds(3000)));

  std::vector<std::string> refused_call_ids;
  for (TestUa* caller : {&bob, &carol}) {
    const SipMessage invite = caller->make_invite(alice.aor());
    refused_call_ids.push_back(invite.header("Call-ID").value_or(""));
    const auto sent = steady_clock::now();
    caller->send(invite);
    const SipMessage r = caller->receive_response("INVITE", Millis(2000));
    EXPECT_EQ(r.status(), 503) << r.summary();
    EXPECT_TRUE(r.header("Retry-After").has_value()) << r.summary();
    expect_from_edge(r);
    EXPECT_LT(steady_clock::now() - sent, milliseconds(1000)) << "the 503 was not at once";
    caller->send(TestUa::make_ack_for_failure(invite, r));
  }
  EXPECT_GE(edge_->status().number("core_refused_down"), 2u);

  restart_core();
  ASSERT_TRUE(core_up(true, milliseconds(10000)));
  ASSERT_EQ(alice.register_with().status(), 200);  // the new core knows nobody yet
  const Call c = call(bob, alice);
  for (const std::string& id : refused_call_ids) EXPECT_NE(c.invite_received.header("Call-ID"), id);
  const auto more = alice.try_receive(Millis(1000));
  EXPECT_FALSE(more.has_value()) << "a stale message reached alice: " << more->summary();
}

// A UDP client's request went to the core; its retransmissions are absorbed
// (the core is reliable). The core dies before answering: the next
// retransmission is not absorbed into silence, it gets 503 from the edge.
TEST_F(CoreFailure, AUdpRetransmissionAbsorbedBeforeTheCoreDiedIsAnswered) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& carol = ua("carol");
  carol.connect(Transport::udp, edge_->endpoint(Transport::udp));
  SipMessage msg = SipMessage::request("MESSAGE", alice.aor());
  msg.add_header("Via", carol.via(TestUa::new_branch()));
  msg.add_header("Max-Forwards", "70");
  msg.add_header("From", "<" + carol.aor() + ">;tag=" + TestUa::new_tag());
  msg.add_header("To", "<" + alice.aor() + ">");
  msg.add_header("Call-ID", TestUa::new_call_id());
  msg.add_header("CSeq", "1 MESSAGE");
  msg.set_body("hello", "text/plain");
  carol.send(msg);
  const SipMessage delivered = alice.receive_request("MESSAGE");  // alice never answers it
  carol.send(msg);                                                // a retransmission: absorbed
  EXPECT_FALSE(carol.try_receive(Millis(300)).has_value());

  core_->signal_group(SIGKILL);
  ASSERT_TRUE(core_up(false, milliseconds(3000)));
  carol.send(msg);  // the retransmission after the core link went down
  const SipMessage r = carol.receive_response("MESSAGE", Millis(2000));
  EXPECT_EQ(r.status(), 503) << r.summary();
  EXPECT_TRUE(r.header("Retry-After").has_value()) << r.summary();
  expect_from_edge(r);
}

class FlowFailsUnderInvite : public EdgeTest, public ::testing::WithParamInterface<Transport> {};

// RFC 5626 §5.3: the INVITE from the core reached alice's flow, which then
// closes before alice answers (the phone rang, its connection dropped): the edge
// sends the core 430 Flow Failed for it, once, which the caller hears.
TEST_P(FlowFailsUnderInvite, TheCoreGets430) {
  const Transport t = GetParam();
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, t).status(), 200);
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage at_alice = alice.receive_request("INVITE");
  alice.send(alice.make_response(at_alice, 180, "Ringing", TestUa::new_tag()));
  std::this_thread::sleep_for(milliseconds(200));  // the 180 on its way to bob
  alice.close();

  const SipMessage r = bob.receive_response("INVITE");  // the first final response
  EXPECT_EQ(r.status(), 430) << r.summary();
  bob.send(TestUa::make_ack_for_failure(invite, r));
  EXPECT_FALSE(bob.try_receive(Millis(500)).has_value()) << "more than one final response";
  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r430"), 1u);
  EXPECT_FALSE(edge_->events("flow_failed").empty()) << "no event=flow_failed log line";
}

INSTANTIATE_TEST_SUITE_P(StreamTransports, FlowFailsUnderInvite,
                         ::testing::Values(Transport::tcp, Transport::tls, Transport::ws, Transport::wss),
                         [](const ::testing::TestParamInfo<Transport>& p) {
                           return std::string(via_token(p.param));
                         });

}  // namespace
}  // namespace edge::test
