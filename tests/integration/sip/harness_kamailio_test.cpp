// Proves the harness against a real Kamailio core: registration on every transport, Path/outbound, calls, keep-alives.
#include <gtest/gtest.h>

#include <ostream>

#include "edge/test/sip/gtest_support.h"
#include "edge/test/sip/kamailio.h"
#include "edge/test/sip/ports.h"
#include "edge/test/sip/test_ua.h"

namespace edge::test {
namespace {

class KamailioHarnessTest : public ::testing::Test {
 protected:
  // A core with every listener the UA can use, so one fixture serves every transport.
  void SetUp() override {
    KamailioOptions o;
    o.tls_port = free_port();
    o.ws_port = free_port();
    o.wss_port = free_port();
    core_ = std::make_unique<KamailioProcess>(o);
    dump_.add("kamailio log", [this] { return core_->log(); });
  }
  void TearDown() override { dump_.dump(); }

  TestUa& ua(std::string user) {
    uas_.push_back(std::make_unique<TestUa>(user));
    TestUa* u = uas_.back().get();
    dump_.add("UA " + user, [u] { return u->transcript(); });
    return *u;
  }

  ConnectOptions verified() const {
    ConnectOptions o;
    o.tls.ca_file = core_->ca_file();
    return o;
  }

  std::unique_ptr<KamailioProcess> core_;
  std::vector<std::unique_ptr<TestUa>> uas_;
  FailureDump dump_;
};

struct Flow {
  Transport transport;
  bool v6;
};
std::string flow_name(const ::testing::TestParamInfo<Flow>& p) {
  return std::string(uri_transport(p.param.transport)) + (p.param.v6 ? "6" : "4");
}
void PrintTo(const Flow& f, std::ostream* os) { *os << via_token(f.transport) << (f.v6 ? " over IPv6" : " over IPv4"); }

class RegisterOverTransport : public KamailioHarnessTest, public ::testing::WithParamInterface<Flow> {};

// An outbound REGISTER is stored and answered by the core with the RFC 5626 headers.
TEST_P(RegisterOverTransport, OutboundRegisterIsStoredAndAnsweredByTheCore) {
  auto [transport, v6] = GetParam();
  TestUa& alice = ua("alice");
  alice.connect(transport, core_->endpoint(transport, v6), verified());
  EXPECT_EQ(alice.local_endpoint().address.is_v6(), v6);

  SipMessage ok = alice.register_with();
  EXPECT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.header("Server"), "core-kamailio");
  EXPECT_TRUE(ok.has_token("Require", "outbound"));
  EXPECT_TRUE(ok.has_token("Supported", "outbound"));
  auto contacts = ok.header_values("Contact");
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(uri_of(contacts[0]), alice.contact_uri());
  EXPECT_EQ(header_param(contacts[0], "+sip.instance"), "\"<" + alice.profile().instance + ">\"");
  EXPECT_EQ(header_param(contacts[0], "reg-id"), "1");
  EXPECT_EQ(header_param(contacts[0], "expires"), "60");
  // rport (RFC 3581) filled with the flow's source port.
  EXPECT_EQ(header_param(ok.top_via(), "rport"), std::to_string(alice.local_endpoint().port));

  // Un-REGISTER: the binding goes away.
  RegisterOptions gone;
  gone.expires = 0;
  SipMessage bye = alice.register_with(gone);
  EXPECT_EQ(bye.status(), 200);
  EXPECT_FALSE(bye.has_header("Contact"));
}

INSTANTIATE_TEST_SUITE_P(Flows, RegisterOverTransport,
                         ::testing::Values(Flow{Transport::udp, false}, Flow{Transport::tcp, false},
                                           Flow{Transport::udp, true}, Flow{Transport::tcp, true},
                                           Flow{Transport::tls, false}, Flow{Transport::ws, false},
                                           Flow{Transport::wss, false}),
                         flow_name);

// Without "Supported: outbound" the core still says it supports outbound, but does not require it.
TEST_F(KamailioHarnessTest, RegisterWithoutSupportedOutboundGetsNoRequireOutbound) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::udp, core_->endpoint(Transport::udp));
  RegisterOptions o;
  o.outbound = false;
  SipMessage ok = alice.register_with(o);
  EXPECT_EQ(ok.status(), 200);
  EXPECT_FALSE(ok.has_header("Require"));
  EXPECT_TRUE(ok.has_token("Supported", "outbound"));
}

// What an edge in front of the core does to a REGISTER, done by hand: its own
// Via on top and a Path with a token and ;ob (RFC 5626 §5.1). The test UA plays
// the edge, so the core's answer and its later routing are what an edge sees.
class EdgeByHand : public KamailioHarnessTest {
 protected:
  SipMessage register_through_fake_edge(TestUa& edge, const std::string& path_params, bool supported_path = true) {
    RegisterOptions o;
    o.supported_path = supported_path;
    SipMessage reg = edge.make_register(o);
    reg.prepend_header("Via", edge.via(TestUa::new_branch()));  // the edge's, above the client's
    reg.add_header("Path", "<sip:" + std::string(kToken) + "@" + edge.local_endpoint().host_port() +
                               ";transport=tcp;lr" + path_params + ">");
    edge.send(reg);
    return edge.receive_response("REGISTER");
  }
  static constexpr std::string_view kToken = "AQID-flow_token";
};

TEST_F(EdgeByHand, PathWithObIsStoredReturnedAndUsedToReachTheUser) {
  TestUa& edge = ua("alice");
  edge.connect(Transport::tcp, core_->endpoint(Transport::tcp));
  SipMessage ok = register_through_fake_edge(edge, ";ob");
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_TRUE(ok.has_token("Require", "outbound"));
  ASSERT_EQ(ok.header_values("Path").size(), 1u);
  EXPECT_EQ(uri_user(uri_of(ok.header("Path").value())), kToken);
  EXPECT_EQ(ok.header_values("Via").size(), 2u);  // the response goes back through the "edge"

  // A call for alice goes to the first Path hop, with that Path as Route and the Contact as Request-URI.
  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  SipMessage bob_invite = bob.make_invite("sip:alice@127.0.0.1");
  bob.send(bob_invite);
  SipMessage invite = edge.receive_request("INVITE");
  auto routes = invite.header_values("Route");
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(uri_user(uri_of(routes[0])), kToken);
  EXPECT_TRUE(uri_param(uri_of(routes[0]), "ob"));
  EXPECT_EQ(invite.request_uri(), edge.contact_uri());
  EXPECT_EQ(invite.header_values("Record-Route").size(), 2u);  // UDP in, TCP out: double Record-Route
  edge.send(edge.make_response(invite, 480, "Temporarily Unavailable"));
  SipMessage failed = bob.receive_response("INVITE");
  EXPECT_EQ(failed.status(), 480);
  bob.send(TestUa::make_ack_for_failure(bob_invite, failed));
}

// The core insists on ;ob from a first-hop edge of an outbound registration (RFC 5626 §5.1).
TEST_F(EdgeByHand, PathWithoutObIsRejectedWith439) {
  TestUa& edge = ua("alice");
  edge.connect(Transport::tcp, core_->endpoint(Transport::tcp));
  SipMessage r = register_through_fake_edge(edge, "");
  EXPECT_EQ(r.status(), 439) << r.summary();
  EXPECT_EQ(r.reason(), "First Hop Lacks Outbound Support");
  EXPECT_EQ(r.header("Server"), "core-kamailio");
}

// path_mode=1: the core stores Path either way but returns it only to a UA that said "Supported: path".
TEST_F(EdgeByHand, PathIsNotReturnedWithoutSupportedPath) {
  TestUa& edge = ua("alice");
  edge.connect(Transport::tcp, core_->endpoint(Transport::tcp));
  SipMessage ok = register_through_fake_edge(edge, ";ob", /*supported_path=*/false);
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_FALSE(ok.has_header("Path"));
}

// A basic call through the core: UA B calls registered UA A; the INVITE comes
// down A's own flow; 200, ACK and BYE follow the Record-Route set.
struct CallCase {
  Transport callee;
  Transport caller;
  bool callee_hangs_up;
};

void PrintTo(const CallCase& c, std::ostream* os) {
  *os << via_token(c.callee) << " callee, " << via_token(c.caller) << " caller, "
      << (c.callee_hangs_up ? "callee" : "caller") << " hangs up";
}

class CallThroughCore : public KamailioHarnessTest, public ::testing::WithParamInterface<CallCase> {};

TEST_P(CallThroughCore, InviteReachesTheCalleeOnItsFlowAndBothEndsFollowTheRouteSet) {
  auto [callee_transport, caller_transport, callee_hangs_up] = GetParam();
  TestUa& a = ua("alice");
  a.connect(callee_transport, core_->endpoint(callee_transport));
  ASSERT_EQ(a.register_with().status(), 200);
  TestUa& b = ua("bob");
  b.connect(caller_transport, core_->endpoint(caller_transport));

  SipMessage invite = b.make_invite("sip:alice@127.0.0.1");
  b.send(invite);

  SipMessage incoming = a.receive_request("INVITE");
  EXPECT_EQ(incoming.request_uri(), a.contact_uri());
  EXPECT_EQ(incoming.call_id(), invite.call_id());
  auto record_route = incoming.header_values("Record-Route");
  ASSERT_FALSE(record_route.empty());
  for (const auto& rr : record_route) EXPECT_TRUE(uri_param(uri_of(rr), "lr")) << rr;
  // Crossing transports makes the core record-route twice (one per side).
  EXPECT_EQ(record_route.size(), callee_transport == caller_transport ? 1u : 2u);

  const std::string tag = TestUa::new_tag();
  a.send(a.make_response(incoming, 180, "Ringing", tag));
  a.send(a.make_response(incoming, 200, "OK", tag, make_sdp(a.local_endpoint().host(), 40002)));
  SipMessage ok = b.receive_response("INVITE");
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.to_tag(), tag);
  EXPECT_EQ(ok.header_values("Record-Route"), record_route);

  Dialog caller = Dialog::as_uac(invite, ok);
  Dialog callee = Dialog::as_uas(incoming, tag);
  EXPECT_EQ(caller.route_set.size(), record_route.size());
  b.send(b.make_ack(caller));
  SipMessage ack = a.receive_request("ACK");
  EXPECT_EQ(ack.request_uri(), a.contact_uri());
  EXPECT_EQ(ack.cseq_number(), invite.cseq_number());

  TestUa& hanger = callee_hangs_up ? a : b;
  TestUa& hung = callee_hangs_up ? b : a;
  Dialog& d = callee_hangs_up ? callee : caller;
  SipMessage bye = hanger.make_in_dialog(d, "BYE");
  hanger.send(bye);
  SipMessage got = hung.receive_request("BYE");
  EXPECT_EQ(got.call_id(), invite.call_id());
  EXPECT_EQ(got.request_uri(), hung.contact_uri());
  EXPECT_FALSE(got.has_header("Route"));  // the core consumed its own Route entries
  hung.send(hung.make_response(got, 200, "OK"));
  EXPECT_EQ(hanger.receive_response("BYE").status(), 200);
}

std::string call_name(const ::testing::TestParamInfo<CallCase>& p) {
  return std::string(uri_transport(p.param.callee)) + "_callee_from_" + std::string(uri_transport(p.param.caller)) +
         (p.param.callee_hangs_up ? "_callee_hangs_up" : "_caller_hangs_up");
}

INSTANTIATE_TEST_SUITE_P(Calls, CallThroughCore,
                         ::testing::Values(CallCase{Transport::tcp, Transport::tcp, false},
                                           CallCase{Transport::tcp, Transport::tcp, true},
                                           CallCase{Transport::udp, Transport::tcp, true},
                                           CallCase{Transport::ws, Transport::udp, false},
                                           CallCase{Transport::tls, Transport::tcp, true}),
                         call_name);

// RFC 5626 §4.4.1: a CRLFCRLF ping on a connection gets a CRLF pong. Kamailio
// answers on WS/WSS too (a text message holding CRLF); on UDP it stays silent:
// STUN is the UDP keep-alive.
class KeepAliveOverTransport : public KamailioHarnessTest, public ::testing::WithParamInterface<Transport> {};

TEST_P(KeepAliveOverTransport, CrlfPingGetsAPong) {
  TestUa& alice = ua("alice");
  alice.connect(GetParam(), core_->endpoint(GetParam()));
  alice.send_ping();
  EXPECT_TRUE(alice.wait_pong(Millis(2000)));
  // The flow still carries SIP afterwards.
  EXPECT_EQ(alice.register_with().status(), 200);
}

INSTANTIATE_TEST_SUITE_P(Streams, KeepAliveOverTransport,
                         ::testing::Values(Transport::tcp, Transport::tls, Transport::ws, Transport::wss),
                         [](const auto& p) { return std::string(uri_transport(p.param)); });

// RFC 5626 §4.4.2 / §8: a STUN Binding request on the SIP UDP port reports the flow's public address.
TEST_F(KamailioHarnessTest, StunBindingOnTheSipUdpPortReportsTheFlowAddress) {
  for (bool v6 : {false, true}) {
    TestUa& alice = ua(v6 ? "alice6" : "alice4");
    alice.connect(Transport::udp, core_->endpoint(Transport::udp, v6));
    StunBindingResponse r = alice.stun_binding(Millis(2000));
    EXPECT_EQ(r.message_type, 0x0101);
    EXPECT_TRUE(r.magic_cookie_ok);
    ASSERT_TRUE(r.mapped);
    EXPECT_TRUE(r.mapped_was_xor);
    EXPECT_EQ(*r.mapped, alice.local_endpoint());
    // STUN and SIP share the port.
    EXPECT_EQ(alice.register_with().status(), 200);
  }
}

// The UA checks the server certificate when given a CA, and refuses a foreign one.
TEST_F(KamailioHarnessTest, TlsVerifiesTheCoreCertificate) {
  TestUa& good = ua("good");
  good.connect(Transport::tls, core_->endpoint(Transport::tls), verified());
  EXPECT_EQ(good.register_with().status(), 200);

  TempDir other_dir("edge-other-ca");
  TestPki other(other_dir.path());
  ConnectOptions wrong;
  wrong.tls.ca_file = other.ca_file();
  TestUa& bad = ua("bad");
  EXPECT_THROW(bad.connect(Transport::tls, core_->endpoint(Transport::tls), wrong), std::runtime_error);
  ConnectOptions wrong_name = verified();
  wrong_name.tls.verify_name = "core.example.test";
  EXPECT_THROW(bad.connect(Transport::wss, core_->endpoint(Transport::wss), wrong_name), std::runtime_error);
  EXPECT_FALSE(bad.is_open());  // a failed connect leaves no half-open flow
}

// A core that demands client certificates gets the UA's; a UA without one does not get through.
TEST(KamailioMutualTlsTest, ClientCertificateIsPresentedWhenTheCoreAsksForOne) {
  TempDir dir("edge-mtls");
  TestPki pki(dir.path());
  KamailioOptions o;
  o.port = free_port(true);
  o.tls_port = free_port();
  o.tls_cert = pki.issue("core");
  o.tls_ca = pki.ca_file();
  KamailioProcess core(o);
  FailureDump dump;
  dump.add("kamailio log", [&core] { return core.log(); });

  ConnectOptions with_cert;
  with_cert.tls.ca_file = pki.ca_file();
  CertFiles mine = pki.issue("alice-phone");
  with_cert.tls.cert_file = mine.cert;
  with_cert.tls.key_file = mine.key;
  TestUa alice("alice");
  alice.connect(Transport::tls, core.endpoint(Transport::tls), with_cert);
  EXPECT_EQ(alice.register_with().status(), 200);

  // With TLS 1.3 the server checks the client after the client's handshake is
  // done, so the refusal shows as a failed connect or a flow closed unanswered.
  TestUa anonymous("anonymous");
  bool refused = false;
  try {
    ConnectOptions no_cert;
    no_cert.tls.ca_file = pki.ca_file();
    anonymous.connect(Transport::tls, core.endpoint(Transport::tls), no_cert);
    anonymous.send(anonymous.make_register());
    refused = !anonymous.try_receive(Millis(1000));
  } catch (const std::exception&) {
    refused = true;
  }
  EXPECT_TRUE(refused) << anonymous.transcript();
  dump.dump();
}

// connect() binds where it is told; Via and Contact follow the bound address.
TEST_F(KamailioHarnessTest, ConnectBindsTheChosenLocalAddress) {
  for (Transport t : {Transport::udp, Transport::tcp}) {
    ConnectOptions o;
    o.local = loopback(free_port());
    TestUa& alice = ua("alice-" + std::string(uri_transport(t)));
    alice.connect(t, core_->endpoint(t), o);
    EXPECT_EQ(alice.local_endpoint(), *o.local);
    SipMessage ok = alice.register_with();
    EXPECT_EQ(ok.status(), 200);
    EXPECT_EQ(uri_host_port(uri_of(ok.header("Contact").value_or(""))), o.local->host_port());
  }
}

// A WebSocket upgrade that does not offer the "sip" subprotocol is refused (RFC 7118 §4).
TEST_F(KamailioHarnessTest, WebSocketWithoutSipSubprotocolIsRefused) {
  ConnectOptions o;
  o.ws_protocol = "";
  TestUa& alice = ua("alice");
  EXPECT_THROW(alice.connect(Transport::ws, core_->endpoint(Transport::ws), o), std::runtime_error);
}

// Every wait is bounded: nothing comes, and the UA says so in time.
TEST_F(KamailioHarnessTest, ReceiveTimesOutInsteadOfHanging) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, core_->endpoint(Transport::tcp));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(alice.try_receive(Millis(200)));
  EXPECT_THROW(alice.receive(Millis(100)), TimeoutError);
  EXPECT_FALSE(alice.wait_pong(Millis(100)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(alice.is_open());
}

// After the core stops, a stream flow sees the close.
TEST_F(KamailioHarnessTest, UaSeesTheCoreCloseItsFlow) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, core_->endpoint(Transport::tcp));
  ASSERT_EQ(alice.register_with().status(), 200);
  core_->stop();
  EXPECT_FALSE(core_->running());
  EXPECT_TRUE(alice.wait_closed(Millis(2000)));
  EXPECT_FALSE(alice.is_open());
}

}  // namespace
}  // namespace edge::test
