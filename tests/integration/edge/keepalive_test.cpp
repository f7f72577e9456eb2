// Issue "SIP outbound edge front end", tests 5 and 6: keep-alives answered, idle flows closed.
#include <ostream>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

using Clock = std::chrono::steady_clock;

class CrlfKeepAlive : public EdgeTest, public ::testing::WithParamInterface<Transport> {};

std::string transport_name(const ::testing::TestParamInfo<Transport>& p) {
  return std::string(via_token(p.param));
}

// RFC 5626 §4.4.1 / §5.4: a CRLFCRLF ping between messages on a reliable flow is
// answered with one CRLF on the same connection, before and after registering;
// the flow keeps working (RFC 7118 §6: the same over WebSocket).
TEST_P(CrlfKeepAlive, PingIsAnsweredWithCrlfOnTheSameConnection) {
  const Transport t = GetParam();
  TestUa& alice = ua("alice");
  alice.connect(t, edge_->endpoint(t), connect_options());
  alice.send_ping();
  EXPECT_TRUE(alice.wait_pong()) << "no CRLF pong before registering";
  ASSERT_EQ(alice.register_with().status(), 200);
  for (int i = 0; i < 3; ++i) {
    alice.send_ping();
    EXPECT_TRUE(alice.wait_pong()) << "no CRLF pong to ping " << i;
  }
  EXPECT_TRUE(alice.is_open());
  EXPECT_EQ(alice.register_with().status(), 200) << "the flow carries SIP after the pings";
}

INSTANTIATE_TEST_SUITE_P(StreamTransports, CrlfKeepAlive,
                         ::testing::Values(Transport::tcp, Transport::tls, Transport::ws, Transport::wss),
                         transport_name);

// RFC 5626 §5.4 / §8: a STUN Binding request on the SIP UDP port is answered
// from that port with XOR-MAPPED-ADDRESS = the client's address as the edge sees it, once the
// client has a flow (it sent SIP on the port); before that it gets nothing (no reflection).
TEST_F(EdgeTest, StunBindingOnUdpAnswersXorMappedAddressOfTheClient) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::udp, edge_->endpoint(Transport::udp));
  alice.send_bytes(make_stun_binding_request(random_stun_transaction_id()));
  EXPECT_FALSE(alice.try_receive_stun(Millis(300))) << "STUN answered before the source sent any SIP";
  EXPECT_GE(edge_->status().number("stun_unsolicited"), 1u);

  ASSERT_EQ(alice.register_with().status(), 200);
  const StunBindingResponse before = alice.stun_binding();
  EXPECT_EQ(before.message_type, 0x0101) << "Binding success response";
  EXPECT_TRUE(before.magic_cookie_ok);
  ASSERT_TRUE(before.mapped.has_value());
  EXPECT_TRUE(before.mapped_was_xor) << "XOR-MAPPED-ADDRESS, not only MAPPED-ADDRESS";
  EXPECT_EQ(*before.mapped, alice.local_endpoint());

  for (int i = 0; i < 3; ++i) {
    const StunBindingResponse r = alice.stun_binding();
    EXPECT_EQ(r.message_type, 0x0101);
    ASSERT_TRUE(r.mapped.has_value());
    EXPECT_EQ(*r.mapped, alice.local_endpoint());
  }
  EXPECT_EQ(alice.register_with().status(), 200) << "SIP still flows on the port after STUN";
}

// RFC 6223: a `keep` Via parameter in the REGISTER gets the Flow-Timer value in the 2xx.
TEST_F(EdgeTest, KeepViaParameterGetsTheFlowTimerValue) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  SipMessage reg = alice.make_register();
  reg.set_header("Via", reg.top_via() + ";keep");
  alice.send(reg);
  const SipMessage ok = alice.receive_response("REGISTER");
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.header("Flow-Timer"), "30");
  EXPECT_EQ(header_param(ok.top_via(), "keep"), "30") << ok.top_via();
}

// Test 6: small Flow-Timer, grace and idle timeout, so the whole test takes seconds.
class IdleFlows : public EdgeTest {
 protected:
  static constexpr int kFlowTimer = 3;
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.flow_timer = kFlowTimer;
    o.flow_grace_ms = 1000;
    o.idle_timeout_ms = 1000;
    return o;
  }
};

// A registered flow that stays silent is closed after Flow-Timer + grace — never
// before Flow-Timer (RFC 5626 §5.4 MUST wait longer); one that sends CRLF pings
// stays; a connection that never registers goes after the idle timeout; a
// silent registered UDP flow is dropped from the flow table; afterwards the core's
// request toward the dead flow gets 430.
TEST_F(IdleFlows, SilentFlowsAreClosedAndPingingOnesKept) {
  TestUa& alice = ua("alice");  // TCP, registered, silent
  const SipMessage ok = register_through_edge(alice, Transport::tcp);
  const auto registered_at = Clock::now();
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.header("Flow-Timer"), std::to_string(kFlowTimer));

  TestUa& bob = ua("bob");  // TCP, registered, pings
  ASSERT_EQ(register_through_edge(bob, Transport::tcp).status(), 200);
  TestUa& dave = ua("dave");  // UDP, registered, silent
  ASSERT_EQ(register_through_edge(dave, Transport::udp).status(), 200);
  TestUa& carol = ua("carol");  // TCP, never registers
  carol.connect(Transport::tcp, edge_->endpoint(Transport::tcp));

  std::optional<Clock::duration> alice_closed_after;
  bool carol_closed = false;
  bool udp_gone = false;
  const auto deadline = Clock::now() + std::chrono::seconds(kFlowTimer + 8);
  int pongs_missing = 0;
  while (Clock::now() < deadline && !(alice_closed_after && carol_closed && udp_gone)) {
    bob.send_ping();
    if (!bob.wait_pong(Millis(1000))) ++pongs_missing;
    if (!alice_closed_after && alice.wait_closed(Millis(100)))
      alice_closed_after = Clock::now() - registered_at;
    if (!carol_closed) carol_closed = carol.wait_closed(Millis(50));
    if (!udp_gone) udp_gone = edge_->status().number("flows_udp") == 0;
    std::this_thread::sleep_for(Millis(300));
  }
  ASSERT_TRUE(alice_closed_after.has_value()) << "the silent registered TCP flow was never closed";
  EXPECT_GT(*alice_closed_after, std::chrono::seconds(kFlowTimer))
      << "closed before Flow-Timer (RFC 5626 §5.4: the edge MUST wait longer than Flow-Timer)";
  EXPECT_TRUE(carol_closed) << "the never-registered connection outlived the idle timeout";
  EXPECT_TRUE(udp_gone) << "the silent registered UDP flow is still in the flow table";
  EXPECT_EQ(pongs_missing, 0);
  EXPECT_TRUE(bob.is_open()) << "the flow kept alive by CRLF pings was closed";
  EXPECT_EQ(bob.register_with().status(), 200);
  EXPECT_EQ(edge_->status().number("flows_tcp"), 1u) << "only bob's connection is left";

  TestUa& caller = ua("caller");
  caller.connect(Transport::udp, core_->endpoint(Transport::udp));
  for (TestUa* gone : {&alice, &dave}) {
    const SipMessage invite = caller.make_invite(gone->aor());
    caller.send(invite);
    const SipMessage r = caller.receive_response("INVITE");
    EXPECT_EQ(r.status(), 430) << gone->profile().user << ": " << r.summary();
    caller.send(TestUa::make_ack_for_failure(invite, r));
  }
}

}  // namespace
}  // namespace edge::test
