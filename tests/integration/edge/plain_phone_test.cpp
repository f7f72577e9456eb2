// Issue 17: plain RFC 3261 phones, which send no "Supported: path", no reg-id and no
// +sip.instance (most deployed phones), registering through edged with a real
// Kamailio registrar behind it. sip.path_without_supported (default true) gives them
// the edge's Path all the same, so the core reaches them back through their flow.
#include <chrono>
#include <ostream>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

RegisterOptions plain_phone(int expires = 60) {
  RegisterOptions o;
  o.expires = expires;
  o.outbound = false;        // no +sip.instance, no reg-id, no Supported: outbound
  o.supported_path = false;  // no Supported header at all
  o.ob_in_contact = false;
  return o;
}

// The core's REGISTER as Kamailio received it is not visible to the test, so the
// Path is proven by what it is for: bob's call, routed by the stored Path, arrives
// on alice's own connection.
TEST_F(EdgeTest, APlainTcpPhoneWithoutSupportedPathTakesACallOnItsFlow) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  const Endpoint flow = alice.local_endpoint();
  const SipMessage ok = alice.register_with(plain_phone());
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.header("Server"), kCoreServer);
  // Kamailio (path_mode=1) hands the Path back only to a UA that sent Supported: path.
  EXPECT_FALSE(ok.has_header("Path")) << ok.summary();
  EXPECT_FALSE(ok.has_header("Flow-Timer")) << "not an outbound registration";

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  Call c = call(bob, alice);
  EXPECT_EQ(alice.local_endpoint(), flow);
  EXPECT_EQ(c.invite_received.request_uri(), alice.contact_uri(false));
  EXPECT_FALSE(c.invite_received.has_header("Route")) << "the edge popped its Path URI";
  const auto rr = c.invite_received.header_values("Record-Route");
  ASSERT_FALSE(rr.empty());
  EXPECT_FALSE(uri_user(uri_of(rr[0])).empty()) << rr[0] << ": the edge stays on the path with the token";

  bob.send(bob.make_in_dialog(c.caller, "BYE"));
  const SipMessage bye = alice.receive_request("BYE");
  alice.send(alice.make_response(bye, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);
  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r430"), 0u);
  EXPECT_EQ(s.number("r403"), 0u);
}

// A plain UDP phone without Supported: path, Expires 3600 and no keep-alives: its
// flow outlives limits.idle_timeout_ms (kept for the granted expiry, commit 1df061b)
// and the call still reaches it.
class PlainPhoneIdle : public EdgeTest {
 protected:
  static constexpr std::int64_t kIdleMs = 1000;
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.idle_timeout_ms = kIdleMs;
    o.flow_grace_ms = 1000;
    return o;
  }
  // After silence for three idle timeouts (the sweep runs once a second) the flow of
  // alice is still there and bob's call reaches it.
  void expect_call_after_silence(TestUa& alice, TestUa& bob) {
    std::this_thread::sleep_for(Millis(3 * kIdleMs + 1500));
    EXPECT_EQ(edge_->status().number("flows_udp"), 1u) << "alice's flow expired";
    const SipMessage invite = bob.make_invite(alice.aor());
    bob.send(invite);
    const auto in = alice.try_receive(Millis(5000));
    if (!in || !in->is_request() || in->method() != "INVITE") {
      ADD_FAILURE() << "the INVITE never reached alice's UDP flow";
      const SipMessage r = bob.receive_response("INVITE");
      ADD_FAILURE() << "bob got " << r.summary();
      bob.send(TestUa::make_ack_for_failure(invite, r));
      return;
    }
    alice.send(alice.make_response(*in, 486, "Busy Here", TestUa::new_tag()));
    const SipMessage r = bob.receive_response("INVITE");
    EXPECT_EQ(r.status(), 486) << r.summary();
    bob.send(TestUa::make_ack_for_failure(invite, r));
    EXPECT_EQ(edge_->status().number("r430"), 0u);
  }
};

TEST_F(PlainPhoneIdle, AUdpPhoneWithoutSupportedPathReceivesACallAfterTheIdleTimeout) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::udp, edge_->endpoint(Transport::udp));
  const SipMessage ok = alice.register_with(plain_phone(3600));
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_FALSE(ok.has_header("Flow-Timer"));
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  expect_call_after_silence(alice, bob);
}

// The same phone with Supported: path (still no reg-id / +sip.instance).
TEST_F(PlainPhoneIdle, AUdpPhoneRegisteredForAnHourReceivesACallAfterTheIdleTimeout) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::udp, edge_->endpoint(Transport::udp));
  RegisterOptions plain = plain_phone(3600);
  plain.supported_path = true;
  const SipMessage ok = alice.register_with(plain);
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_FALSE(ok.has_header("Flow-Timer")) << "no Flow-Timer for a UA that did not ask for outbound";
  ASSERT_EQ(ok.header_values("Path").size(), 1u);
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  expect_call_after_silence(alice, bob);
}

// sip.path_without_supported = false (RFC 3327 §5.2 literally): no Path, so the
// registrar binds the address the REGISTER came from (the edge's core link) and a
// call for the phone comes back to the edge with nothing naming a flow: 404 from
// the edge, and the phone never rings. What the default fixes.
class PathOnlyWhenAsked : public EdgeTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.extra.push_back({"sip.path_without_supported", "false"});
    return o;
  }
};

TEST_F(PathOnlyWhenAsked, APlainPhoneGetsNoPathAndCannotBeCalled) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  const SipMessage ok = alice.register_with(plain_phone());
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.header("Server"), kCoreServer);

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage r = bob.receive_response("INVITE", Millis(10000));
  EXPECT_EQ(r.status(), 404) << r.summary() << ": the edge's answer to a request naming no flow";
  bob.send(TestUa::make_ack_for_failure(invite, r));
  // The final answer came after the core's only attempt: nothing is left to reach alice.
  const auto in = alice.try_receive(Millis(500));
  EXPECT_FALSE(in && in->is_request()) << in->summary();
}

// The outbound REGISTER without Supported: path that the default gives a Path:
// with the property off it is forwarded without one, and the core's 439 (RFC 5626
// §5.1: a multi-hop outbound REGISTER whose first hop gave no ;ob) comes back.
TEST_F(PathOnlyWhenAsked, AnOutboundRegisterWithoutSupportedPathGetsNoPath) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  RegisterOptions o;
  o.supported_path = false;
  const SipMessage r = alice.register_with(o);
  EXPECT_EQ(r.status(), 439) << r.summary();
  EXPECT_FALSE(r.has_header("Path")) << r.summary();
  EXPECT_FALSE(r.has_header("Flow-Timer")) << r.summary();
  EXPECT_EQ(r.header("Server"), kCoreServer);
}

}  // namespace
}  // namespace edge::test
