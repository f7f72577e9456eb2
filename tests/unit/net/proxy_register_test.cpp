// REGISTER through the edge: Path with the flow token (RFC 5626 §5.1, RFC 3327), 421/439/503, Flow-Timer and
// keep on 2xx.
#include "proxy_test_support.h"

#include <edge/net/token/token.h>

namespace edge::net::testing {
namespace {

using sip::HeaderId;

class Register : public ProxyFixture {};

TEST_F(Register, FirstHopOutboundRegisterGetsPathWithTokenLrAndOb) {
  from_client(kBob, register_tcp());
  Out fwd(out_.take().bytes);
  ASSERT_EQ(fwd.values(HeaderId::path).size(), 1u);
  const std::string token = token_of(kBob);
  EXPECT_EQ(fwd.route_uri(HeaderId::path, 0), "sip:" + token + "@10.0.0.1:5060;transport=tcp;lr;ob");
  // The token names bob's flow and nothing else.
  const flow::VerifyResult v = codec_->verify(token);
  ASSERT_EQ(v.status, flow::TokenStatus::valid);
  EXPECT_EQ(v.flow, kBob);
  // Our Via on top, toward the core; the client's Via got rport filled (RFC 3581).
  const sip::Via ours = fwd.via(0);
  EXPECT_EQ(ours.transport, "TCP");
  EXPECT_EQ(ours.host, "10.0.0.1");
  EXPECT_TRUE(ours.rfc3261_branch());
  const sip::Via client = fwd.via(1);
  EXPECT_EQ(client.rport_value, std::optional<std::uint16_t>(40312));
  EXPECT_EQ(fwd.msg().max_forwards(), std::optional<std::uint32_t>(69));
  EXPECT_EQ(proxy_->stats().paths_added, 1u);
  EXPECT_EQ(proxy_->stats().forwarded_to_core, 1u);
}

TEST_F(Register, NotFirstHopGetsPathWithoutOb) {
  from_client(kBob, register_tcp("Via: SIP/2.0/TCP 198.18.0.1:5060;branch=z9hG4bKupstream1\n"));
  Out fwd(out_.take().bytes);
  const std::string path = fwd.route_uri(HeaderId::path, 0);
  EXPECT_EQ(path, "sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr");
  EXPECT_EQ(path.find(";ob"), std::string::npos);
}

// A UA that asked for Path (Supported: path) gets it as RFC 5626 §5.1 says, and
// nothing is added to its Require.
TEST_F(Register, WithSupportedPathNoRequireIsAdded) {
  from_client(kBob, register_tcp());
  Out fwd(out_.take().bytes);
  ASSERT_EQ(fwd.values(HeaderId::path).size(), 1u);
  EXPECT_FALSE(sip::has_option_tag(fwd.msg(), HeaderId::require, "path")) << fwd.text();
}

// sip.path_without_supported = false: RFC 3327 §5.2's SHOULD NOT, today's behaviour.
TEST_F(Register, WithoutSupportedPathNoPathIsAddedWhenPathWithoutSupportedIsOff) {
  ProxyConfig cfg = lab_config();
  cfg.path_without_supported = false;
  make(cfg);
  from_client(kBob, register_tcp({}, "gruu, outbound"));
  Out fwd(out_.take().bytes);
  EXPECT_TRUE(fwd.values(HeaderId::path).empty());
  EXPECT_FALSE(sip::has_option_tag(fwd.msg(), HeaderId::require, "path"));
  EXPECT_EQ(oracle_->signs.load(), 0u);  // no token needed, none minted
  EXPECT_EQ(proxy_->stats().paths_added, 0u);
}

// The default (sip.path_without_supported = true, as Kamailio's add_path()): an
// outbound REGISTER that forgot "Supported: path" still gets the first hop's Path
// (token, ;ob); nothing is added to its Require.
TEST_F(Register, WithoutSupportedPathAnOutboundRegisterGetsPathAndNoRequire) {
  from_client(kBob, register_tcp({}, "gruu, outbound"));
  Out fwd(out_.take().bytes);
  ASSERT_EQ(fwd.values(HeaderId::path).size(), 1u);
  EXPECT_EQ(fwd.route_uri(HeaderId::path, 0), "sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr;ob");
  EXPECT_TRUE(fwd.values(HeaderId::require).empty()) << fwd.text();
  EXPECT_EQ(proxy_->stats().paths_added, 1u);
}

TEST_F(Register, WithoutSupportedPathIs421WhenPathIsRequired) {
  ProxyConfig cfg = lab_config();
  cfg.path_without_supported = false;
  cfg.require_path = true;
  make(cfg);
  from_client(kBob, register_tcp({}, {}));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_FALSE(s.to_core);
  EXPECT_EQ(s.flow, kBob);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 421);
  EXPECT_EQ(resp.header("Require"), "path");
  EXPECT_EQ(proxy_->stats().r421, 1u);
}

TEST_F(Register, MintFailureIs503WithRetryAfter) {
  oracle_->set_unavailable(true);
  from_client(kBob, register_tcp());
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 503);
  EXPECT_EQ(resp.header("Retry-After"), "5");
  EXPECT_EQ(proxy_->stats().r503, 1u);
  // The flow comes back to life with the HSM.
  oracle_->set_unavailable(false);
  from_client(kBob, register_tcp({}, "path, outbound", "38123"));
  EXPECT_TRUE(out_.take().to_core);
}

TEST_F(Register, ReRegisterOnTheSameFlowCostsNoHsmCall) {
  from_client(kBob, register_tcp());
  out_.take();
  const auto signs = oracle_->signs.load();
  from_client(kBob, register_tcp({}, "path, outbound", "38123"));
  Out fwd(out_.take().bytes);
  EXPECT_EQ(oracle_->signs.load(), signs);
  EXPECT_EQ(proxy_->stats().mints_hsm, 1u);
  EXPECT_EQ(proxy_->stats().mints_avoided, 1u);
  EXPECT_EQ(fwd.route_user(HeaderId::path, 0), token_of(kBob));
}

TEST_F(Register, OutboundRegisterIs439WithoutFlowTokenSecurity) {
  ProxyConfig cfg = lab_config();
  cfg.flow_token_security = false;
  cfg.key_set.clear();
  make(cfg);
  from_client(kBob, register_tcp());
  Out resp(out_.take().bytes);
  EXPECT_EQ(resp.status(), 439);
}

TEST_F(Register, OkWithRequireOutboundGetsFlowTimerKeepAndMarksTheFlow) {
  from_client(kBob, register_tcp());
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200,
                   {{"Require", "outbound"},
                    {"Contact", "<sip:bob@203.0.113.5:40312;transport=tcp;ob>;expires=60"},
                    {"Path", "<" + fwd.route_uri(HeaderId::path, 0) + ">"}}));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  EXPECT_EQ(s.flow, kBob);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 200);
  EXPECT_EQ(resp.msg().flow_timer(), std::optional<std::uint32_t>(30));
  // Our Via is gone; the client's keep got the same value (RFC 6223).
  ASSERT_EQ(resp.values(HeaderId::via).size(), 1u);
  EXPECT_EQ(resp.via(0).keep_value, std::optional<std::uint32_t>(30));
  ASSERT_EQ(out_.registered.size(), 1u);
  EXPECT_EQ(out_.registered[0].first, kBob);
  EXPECT_EQ(out_.registered[0].second, std::chrono::seconds(30));
}

TEST_F(Register, OkWithoutRequireOutboundIsRelayedUntouched) {
  ProxyConfig cfg = lab_config();
  cfg.flow_timer_seconds = 25;
  make(cfg);
  from_client(kBob, register_tcp());
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200));
  Out resp(out_.take().bytes);
  EXPECT_FALSE(resp.msg().flow_timer());
  EXPECT_FALSE(resp.via(0).keep_value);
  EXPECT_TRUE(out_.registered.empty());
}

TEST_F(Register, Ipv6ClientGetsReceivedAndAPathTokenNamingItsFlow) {
  // carol registers from behind a NAT64-ish box: her Via names another address.
  const std::string text = crlf(
      "REGISTER sip:example.test SIP/2.0\n"
      "Via: SIP/2.0/TCP [2001:db8:1::99]:5060;branch=z9hG4bKc6reg1;rport\n"
      "Max-Forwards: 70\n"
      "From: <sip:carol@example.test>;tag=c1\n"
      "To: <sip:carol@example.test>\n"
      "Call-ID: reg-carol-1\n"
      "CSeq: 1 REGISTER\n"
      "Supported: outbound, path\n"
      "Contact: "
      "<sip:carol@[2001:db8:1::99]:5060;transport=tcp;ob>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-"
      "1000-8000-000000000003>\"\n"
      "Content-Length: 0\n\n");
  from_client(kCarol, text);
  Out fwd(out_.take().bytes);
  const sip::Via client = fwd.via(1);
  EXPECT_EQ(client.received, "2001:db8:1::7");
  EXPECT_EQ(client.rport_value, std::optional<std::uint16_t>(50000));
  const flow::VerifyResult v = codec_->verify(fwd.route_user(HeaderId::path, 0));
  ASSERT_TRUE(v.valid());
  EXPECT_EQ(v.flow, kCarol);
  // The 200 finds carol's IPv6 flow through our branch.
  from_core(answer(fwd.text(), 200, {{"Require", "outbound"}}));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kCarol);
}

// ---- issue 17: registrations that are not RFC 5626 ----------------------------------------

// A plain phone (no reg-id / +sip.instance: RFC 3327 Path only) on UDP; supported
// empty: no Supported header at all (a plain RFC 3261 phone, as most deployed ones).
std::string plain_register_udp(std::string_view via_params = ";rport", std::string_view supported = "path") {
  return crlf(fill(
      "REGISTER sip:example.test SIP/2.0\n"
      "Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKplain1{p}\n"
      "Max-Forwards: 70\n"
      "From: <sip:alice@example.test>;tag=p1\n"
      "To: <sip:alice@example.test>\n"
      "Call-ID: plain-1@198.51.100.7\n"
      "CSeq: 1 REGISTER\n"
      "{supported}"
      "Contact: <sip:alice@198.51.100.7:5062>\n"
      "Expires: 3600\n"
      "Content-Length: 0\n\n",
      {{"p", std::string(via_params)},
       {"supported", supported.empty() ? std::string() : "Supported: " + std::string(supported) + "\n"}}));
}

// ---- a plain phone without "Supported: path" (sip.path_without_supported) ---------------------

// The default: Path with the flow's token (no ;ob: not an outbound REGISTER) and
// nothing else: no Require: path toward the registrar (Kamailio 5.6 crashed on one
// RFC 4475 REGISTER carrying it), the phone's own headers left alone.
TEST_F(Register, APlainPhoneWithoutSupportedPathGetsPathAndNothingElse) {
  from_client(kAlice, plain_register_udp(";rport", {}));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out fwd(s.bytes);
  ASSERT_EQ(fwd.values(HeaderId::path).size(), 1u) << fwd.text();
  EXPECT_EQ(fwd.route_uri(HeaderId::path, 0), "sip:" + token_of(kAlice) + "@10.0.0.1:5060;transport=tcp;lr");
  const flow::VerifyResult v = codec_->verify(fwd.route_user(HeaderId::path, 0));
  ASSERT_EQ(v.status, flow::TokenStatus::valid);
  EXPECT_EQ(v.flow, kAlice);
  EXPECT_TRUE(fwd.values(HeaderId::require).empty()) << fwd.text();
  EXPECT_TRUE(fwd.values(HeaderId::supported).empty()) << "the phone's Supported is its own";
  EXPECT_EQ(proxy_->stats().paths_added, 1u);
}

// A phone's own Require goes to the registrar as it came.
TEST_F(Register, APlainPhonesOwnRequireGoesThroughUnchanged) {
  std::string text = plain_register_udp(";rport", {});
  text.insert(text.find("Contact:"), "Require: path\r\n");
  from_client(kAlice, text);
  Out fwd(out_.take().bytes);
  ASSERT_EQ(fwd.values(HeaderId::path).size(), 1u);
  EXPECT_EQ(fwd.values(HeaderId::require), std::vector<std::string>{"path"});
}

// sip.require_path only matters once path_without_supported is off: with it on the
// phone gets a Path, so there is nothing to refuse.
TEST_F(Register, PathWithoutSupportedWinsOverRequirePath) {
  ProxyConfig cfg = lab_config();
  cfg.require_path = true;
  make(cfg);
  from_client(kAlice, plain_register_udp(";rport", {}));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  EXPECT_EQ(Out(s.bytes).values(HeaderId::path).size(), 1u);
  EXPECT_EQ(proxy_->stats().r421, 0u);
}

// Without flow-token security nothing names a flow: no Path.
TEST_F(Register, APlainPhoneWithoutTokensGetsNoPathAndNoRequire) {
  ProxyConfig cfg = lab_config();
  cfg.flow_token_security = false;
  cfg.key_set.clear();
  make(cfg);
  from_client(kAlice, plain_register_udp(";rport", {}));
  Out fwd(out_.take().bytes);
  EXPECT_TRUE(fwd.values(HeaderId::path).empty());
  EXPECT_TRUE(fwd.values(HeaderId::require).empty());
}

// The phone's flow is kept for the expiry the registrar granted (commit 1df061b), also
// when the phone never said "Supported: path".
TEST_F(Register, APlainPhoneWithoutSupportedPathKeepsItsFlowForTheGrantedExpiry) {
  from_client(kAlice, plain_register_udp(";rport", {}));
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200, {{"Contact", "<sip:alice@198.51.100.7:5062>;expires=3600"}}));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kAlice);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 200);
  EXPECT_FALSE(resp.msg().flow_timer());
  ASSERT_EQ(out_.registered.size(), 1u);
  EXPECT_EQ(out_.registered[0].first, kAlice);
  EXPECT_EQ(out_.registered[0].second, std::chrono::seconds(3600));
}

TEST_F(Register, APlainRegistrationKeepsItsFlowForTheExpiryTheRegistrarGranted) {
  from_client(kAlice, plain_register_udp());
  Out fwd(out_.take().bytes);
  ASSERT_EQ(fwd.values(HeaderId::path).size(), 1u);
  EXPECT_EQ(fwd.route_uri(HeaderId::path, 0).find(";ob"), std::string::npos);
  // The registrar grants less than asked; the Contact's expires is what counts.
  from_core(answer(fwd.text(), 200,
                   {{"Contact", "<sip:alice@198.51.100.7:5062>;expires=1800"},
                    {"Path", "<" + fwd.route_uri(HeaderId::path, 0) + ">"}}));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kAlice);
  Out resp(s.bytes);
  EXPECT_FALSE(resp.msg().flow_timer()) << "no Flow-Timer for a UA that did not ask for outbound";
  ASSERT_EQ(out_.registered.size(), 1u);
  EXPECT_EQ(out_.registered[0].first, kAlice);
  EXPECT_EQ(out_.registered[0].second, std::chrono::seconds(1800));
  EXPECT_EQ(proxy_->stats().flow_timers_set, 0u);
}

TEST_F(Register, APlainRegistrationWithoutContactExpiresTakesTheExpiresHeader) {
  from_client(kAlice, plain_register_udp());
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200, {{"Contact", "<sip:alice@198.51.100.7:5062>"}, {"Expires", "600"}}));
  out_.take();
  ASSERT_EQ(out_.registered.size(), 1u);
  EXPECT_EQ(out_.registered[0].second, std::chrono::seconds(600));
}

TEST_F(Register, AnUnregisterOrAFailureKeepsNothing) {
  from_client(kAlice, plain_register_udp());
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200, {{"Contact", "<sip:alice@198.51.100.7:5062>;expires=0"}}));
  out_.take();
  from_core(answer(fwd.text(), 200));  // a query answered without bindings
  out_.take();
  from_core(answer(fwd.text(), 401, {{"Contact", "<sip:alice@198.51.100.7:5062>;expires=3600"}}));
  out_.take();
  EXPECT_TRUE(out_.registered.empty());
}

TEST_F(Register, APlainRegistrationThatOffersKeepGetsTheKeepInterval) {
  from_client(kAlice, plain_register_udp(";rport;keep"));
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200, {{"Contact", "<sip:alice@198.51.100.7:5062>;expires=3600"}}));
  Out resp(out_.take().bytes);
  EXPECT_EQ(resp.via(0).keep_value, std::optional<std::uint32_t>(30)) << "RFC 6223";
  ASSERT_EQ(out_.registered.size(), 1u);
  EXPECT_EQ(out_.registered[0].second, std::chrono::seconds(3600));
}

// RFC 5626 §5.4: the Flow-Timer is the first hop's; behind another proxy it is not ours to give.
TEST_F(Register, AnOutboundRegistrationThroughAnotherProxyGetsNoFlowTimer) {
  from_client(kBob, register_tcp("Via: SIP/2.0/TCP 198.18.0.1:5060;branch=z9hG4bKupstream1\n"));
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 200,
                   {{"Require", "outbound"},
                    {"Contact", "<sip:bob@203.0.113.5:40312;transport=tcp;ob>;expires=60"},
                    {"Path", "<" + fwd.route_uri(HeaderId::path, 0) + ">"}}));
  Out resp(out_.take().bytes);
  EXPECT_FALSE(resp.msg().flow_timer());
  EXPECT_EQ(proxy_->stats().flow_timers_set, 0u);
  // The flow to that proxy is still kept for the registration.
  ASSERT_EQ(out_.registered.size(), 1u);
  EXPECT_EQ(out_.registered[0].second, std::chrono::seconds(60));
}

}  // namespace
}  // namespace edge::net::testing
