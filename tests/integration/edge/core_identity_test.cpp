// Issue 17: the core wherever it speaks from (a UDP core answering our Via, a core that opens its own
// TCP connection), with sip.client_to_client_direct=false; a stolen token; plain (non-RFC 5626) phones.
#include <ostream>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

// bob calls alice (bob hangs up), then alice calls bob (bob hangs up again, now
// as the callee): both registered through the edge, every request via the core.
class CallsThroughTheCore : public EdgeTest {
 protected:
  void calls_both_ways(TestUa& alice, TestUa& bob) {
    for (const bool alice_calls : {false, true}) {
      SCOPED_TRACE(alice_calls ? "alice calls bob, BYE from the callee"
                               : "bob calls alice, BYE from the caller");
      const Call c = alice_calls ? call(alice, bob) : call(bob, alice);
      EXPECT_GE(c.invite_received.header_values("Via").size(), 4u) << "edge, core, edge, caller";
      Dialog bob_dialog = alice_calls ? c.callee : c.caller;
      bob.send(bob.make_in_dialog(bob_dialog, "BYE"));
      const SipMessage bye = alice.receive_request("BYE");
      alice.send(alice.make_response(bye, 200, "OK"));
      const SipMessage ok = bob.receive_response("BYE");
      EXPECT_EQ(ok.status(), 200) << ok.summary();
    }
  }
};

// ---- a Kamailio core over UDP ---------------------------------------------------------------

// core = sip:127.0.0.1:5080 (UDP). Kamailio answers our Via sent-by
// (127.0.0.1:5060, the UDP listener; RFC 3261 §18.2.2) and sends its requests
// for the Path / Record-Route URIs there too: the edge must know both for the core's.
class UdpCore : public CallsThroughTheCore {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.core = "sip:127.0.0.1:5080";
    o.log_level = "debug";
    o.extra.push_back({"sip.client_to_client_direct", "false"});
    return o;
  }
};

TEST_F(UdpCore, RegisterCallBothWaysAndByeBothWays) {
  TestUa& alice = ua("alice");
  const SipMessage reg = register_through_edge(alice, Transport::udp);
  ASSERT_EQ(reg.status(), 200) << reg.summary();
  EXPECT_EQ(reg.header("Server"), kCoreServer);
  TestUa& bob = ua("bob");
  ASSERT_EQ(register_through_edge(bob, Transport::tcp).status(), 200);
  calls_both_ways(alice, bob);
  const EdgedStatus s = edge_->status();
  EXPECT_GE(s.number("requests_from_core"), 6u) << "INVITE, ACK, BYE per call";
  EXPECT_EQ(s.number("r430"), 0u);
  EXPECT_EQ(s.number("r403"), 0u);
}

// ---- a Kamailio core that opens its own TCP connection ----------------------------------------

// The harness's stock Kamailio config: for the edge's Path / Record-Route URI
// (127.0.0.1:5060;transport=tcp) it connects to the edge's listener itself. From
// the core's address and with the core's Via, those requests are the core's.
class OwnConnectionCore : public CallsThroughTheCore {
 protected:
  CoreRouting core_routing() override { return CoreRouting::stock; }
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.log_level = "debug";
    o.extra.push_back({"sip.client_to_client_direct", "false"});
    return o;
  }
};

TEST_F(OwnConnectionCore, RegisterCallBothWaysAndByeBothWays) {
  TestUa& alice = ua("alice");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  TestUa& bob = ua("bob");
  ASSERT_EQ(register_through_edge(bob, Transport::udp).status(), 200);
  calls_both_ways(alice, bob);
  const EdgedStatus s = edge_->status();
  EXPECT_GE(s.number("flows_tcp"), 2u) << "alice's connection and the core's own";
  EXPECT_GE(s.number("requests_from_core"), 6u);
  EXPECT_EQ(s.number("r430"), 0u);
  // Kamailio logs "core: METHOD URI from proto:ip:port" per request it routes:
  // each INVITE passed through it once (a retransmission at most; no edge ->
  // core -> edge ping-pong, which runs until Max-Forwards is spent).
  const std::string log = core_->log();
  std::size_t invites = 0;
  for (auto at = log.find("core: INVITE "); at != std::string::npos; at = log.find("core: INVITE ", at + 1))
    ++invites;
  EXPECT_GE(invites, 2u) << log;
  EXPECT_LE(invites, 3u) << "a ping-pong between the edge and the core:\n" << log;
}

// ---- a stolen token ----------------------------------------------------------------------------

// mallory learnt alice's token (every Record-Route shows it) and sends an
// out-of-dialog INVITE to alice's contact with it in Route. By default
// (sip.client_to_client_direct unset: false) the edge hands it to the core,
// whose policy decides; whatever reaches alice has passed the core (its Via).
class StolenToken : public EdgeTest {};

TEST_F(StolenToken, AnOutOfDialogInviteWithAnotherClientsTokenReachesTheCoreNeverTheVictim) {
  TestUa& alice = ua("alice");
  const SipMessage reg = register_through_edge(alice, Transport::tcp);
  ASSERT_EQ(reg.status(), 200);
  const auto paths = reg.header_values("Path");
  ASSERT_EQ(paths.size(), 1u);
  TestUa& mallory = ua("mallory");
  ASSERT_EQ(register_through_edge(mallory, Transport::tcp).status(), 200);

  SipMessage invite = mallory.make_invite(alice.contact_uri());
  invite.prepend_header("Route", paths[0]);
  mallory.send(invite);
  const std::string core_via = "127.0.0.1:" + std::to_string(core_->endpoint(Transport::tcp).port);
  std::optional<SipMessage> final;
  if (const auto in = alice.try_receive(Millis(3000)); in && in->is_request() && in->method() == "INVITE") {
    bool via_core = false;
    for (const auto& v : in->header_values("Via"))
      via_core = via_core || v.find(core_via) != std::string::npos;
    EXPECT_TRUE(via_core) << "the INVITE reached alice around the core:\n" << in->summary();
    alice.send(alice.make_response(*in, 486, "Busy Here", TestUa::new_tag()));
    alice.try_receive(Millis(1000));  // the core's ACK
  }
  final = mallory.receive_response("INVITE");
  EXPECT_GE(final->status(), 300) << final->summary();
  mallory.send(TestUa::make_ack_for_failure(invite, *final));
  EXPECT_NE(core_->log().find("core: INVITE "), std::string::npos) << "the core never saw the INVITE";
}

}  // namespace
}  // namespace edge::test
