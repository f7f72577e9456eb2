// Issue "SIP outbound edge front end", test 1: outbound REGISTER through the edge on every transport.
#include <ostream>

#include "edge_fixture.h"

namespace edge::test {
namespace {

class RegisterThroughEdge : public EdgeTest, public ::testing::WithParamInterface<Transport> {};

std::string transport_name(const ::testing::TestParamInfo<Transport>& p) {
  return std::string(via_token(p.param));
}

// RFC 5626 §5.1 / RFC 3327: the edge, as first hop, inserts Path with its flow
// token, ;ob and ;lr; the core stores it and echoes it (the UA sent Supported:
// path); §5.4: the 2xx that reaches the client carries Flow-Timer with Require: outbound.
TEST_P(RegisterThroughEdge, CoreStoresPathWithTokenAndObAndClientGetsFlowTimer) {
  const Transport t = GetParam();
  TestUa& alice = ua("alice");
  const SipMessage ok = register_through_edge(alice, t);

  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(ok.header("Server"), kCoreServer) << "the 200 is the core's, relayed by the edge";
  EXPECT_TRUE(ok.has_token("Require", "outbound"));
  EXPECT_EQ(ok.header("Flow-Timer"), "30") << "edged's sip.flow_timer";
  EXPECT_EQ(ok.header_values("Via").size(), 1u) << "the edge removed its own Via";

  const auto paths = ok.header_values("Path");
  ASSERT_EQ(paths.size(), 1u) << "the core echoes the stored Path (RFC 3327 §5.3)";
  const std::string path_uri = uri_of(paths[0]);
  EXPECT_EQ(uri_host_port(path_uri), "127.0.0.1:5060")
      << path_uri << ": the edge's core-facing (TCP) address";
  EXPECT_EQ(uri_param(path_uri, "transport"), "tcp") << path_uri;
  EXPECT_TRUE(uri_param(path_uri, "lr")) << path_uri;
  EXPECT_TRUE(uri_param(path_uri, "ob")) << path_uri << ": first hop of an outbound REGISTER (RFC 5626 §5.1)";
  const std::string token = uri_user(path_uri);
  ASSERT_FALSE(token.empty()) << path_uri << ": no flow token in the user part";
  EXPECT_EQ(token.size(), 46u) << token << ": a v1 IPv4 token is 34 bytes = 46 base64url characters";
  EXPECT_EQ(token_key_version(token), 1u) << token;

  const auto contacts = ok.header_values("Contact");
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_EQ(uri_of(contacts[0]), alice.contact_uri());
  EXPECT_EQ(header_param(contacts[0], "reg-id"), "1");

  // The binding as the registrar holds it: a REGISTER without Contact (a fetch,
  // RFC 3261 §10.2.3) lists it, through the same flow. (Kamailio 5.6 returns no
  // Path on a fetch; that the stored Path is used is what CallThroughEdge shows:
  // the core routes alice's calls with Route: <this Path URI>.)
  SipMessage fetch = alice.make_register();
  fetch.remove_header("Contact");
  fetch.remove_header("Expires");
  alice.send(fetch);
  const SipMessage listed = alice.receive_response("REGISTER");
  ASSERT_EQ(listed.status(), 200) << listed.summary();
  const auto bindings = listed.header_values("Contact");
  ASSERT_EQ(bindings.size(), 1u);
  EXPECT_EQ(uri_of(bindings[0]), alice.contact_uri());
  EXPECT_EQ(header_param(bindings[0], "+sip.instance"), "\"<" + alice.profile().instance + ">\"");

  // A refresh on the same flow presents the same token: minted once per flow, then cached.
  const SipMessage refreshed = alice.register_with();
  ASSERT_EQ(refreshed.status(), 200) << refreshed.summary();
  const auto refreshed_paths = refreshed.header_values("Path");
  ASSERT_EQ(refreshed_paths.size(), 1u);
  EXPECT_EQ(uri_of(refreshed_paths[0]), path_uri);

  // The flow is counted on the right transport; one mint per flow, the refresh reused it.
  const EdgedStatus s = edge_->status();
  const std::string flows_key = "flows_" + std::string(uri_transport(t));
  EXPECT_EQ(s.number(flows_key), 1u) << flows_key;
  EXPECT_EQ(s.number("mints_hsm"), 1u);
  EXPECT_EQ(s.text("core_connected"), "true");
}

INSTANTIATE_TEST_SUITE_P(Transports, RegisterThroughEdge,
                         ::testing::Values(Transport::udp, Transport::tcp, Transport::tls, Transport::ws,
                                           Transport::wss),
                         transport_name);

// An outbound REGISTER that lacks "Supported: path" (sip.path_without_supported
// defaults to true, as Kamailio's add_path()): the edge adds its Path with ;ob and
// "Require: path" all the same; Kamailio stores it, so the registration is an
// outbound one (Require: outbound, Flow-Timer) although the 200 shows no Path
// (Kamailio's path_mode=1 echoes it only to a UA that asked). With the property
// off see plain_phone_test.cpp (PathOnlyWhenAsked).
TEST_F(EdgeTest, RegisterWithoutSupportedPathStillGetsTheEdgesPath) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  RegisterOptions o;
  o.supported_path = false;
  const SipMessage r = alice.register_with(o);
  ASSERT_EQ(r.status(), 200) << r.summary() << ": a Path without ;ob would have been 439";
  EXPECT_EQ(r.header("Server"), kCoreServer);
  EXPECT_FALSE(r.has_header("Path")) << r.summary();
  EXPECT_TRUE(r.has_token("Require", "outbound")) << r.summary();
  EXPECT_EQ(r.header("Flow-Timer"), "30");
}

// A REGISTER without outbound (no +sip.instance / reg-id): Path still carries
// the token (so the core can reach the client) but never ;ob, and no Flow-Timer.
TEST_F(EdgeTest, NonOutboundRegisterGetsPathWithoutOb) {
  TestUa& alice = ua("alice");
  alice.connect(Transport::tcp, edge_->endpoint(Transport::tcp));
  RegisterOptions o;
  o.outbound = false;
  const SipMessage ok = alice.register_with(o);
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  const auto paths = ok.header_values("Path");
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_FALSE(uri_param(uri_of(paths[0]), "ob")) << paths[0];
  EXPECT_FALSE(uri_user(uri_of(paths[0])).empty()) << paths[0];
  EXPECT_FALSE(ok.has_header("Flow-Timer"));
}

}  // namespace
}  // namespace edge::test
