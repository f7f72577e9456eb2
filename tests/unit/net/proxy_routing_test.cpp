// Issue 17, routing: strict routing restored (RFC 3261 §16.4), a Route of ours whose user part is
// no token is loose routing (docs/token-format.md, "Token-shaped user parts"), RFC 5658 double
// Record-Route decided by address, port and transport, and 513 for a request our headers take over
// the core side's limit.
#include <edge/net/token/token.h>

#include "proxy_test_support.h"

namespace edge::net::testing {
namespace {

using sip::HeaderId;

// A request with `start` as its start line and `route` (may be empty) as its Route lines.
std::string req(std::string_view start, std::string_view route, std::string_view via,
                std::string_view body = {}, std::string_view method = "INVITE",
                std::string_view to_tag = {}) {
  std::string s = std::string(start) + "\n" + std::string(via) + std::string(route) +
                  "Max-Forwards: 70\n"
                  "From: <sip:alice@example.test>;tag=a1\n"
                  "To: <sip:dave@example.test>" +
                  (to_tag.empty() ? std::string() : ";tag=" + std::string(to_tag)) +
                  "\n"
                  "Call-ID: routing-1\n"
                  "CSeq: 3 " +
                  std::string(method) +
                  "\n"
                  "Contact: <sip:alice@10.1.1.7:5062;ob>\n"
                  "Content-Length: " +
                  std::to_string(body.size()) + "\n\n";
  return crlf(s) + std::string(body);
}

constexpr std::string_view kAliceVia = "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKrt-a;rport\n";
constexpr std::string_view kBobVia = "Via: SIP/2.0/TCP 203.0.113.5:40312;branch=z9hG4bKrt-b;rport\n";
constexpr std::string_view kCoreVia = "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKrt-core\n";

class Routing : public ProxyFixture {
 protected:
  FakeNetwork::Sent one() { return out_.take(); }
};

// ---- strict routing (RFC 3261 §16.4) ---------------------------------------------------------

// A strict-routing core puts our (core-facing) Record-Route URI, with bob's token, into the
// Request-URI and bob's Contact at the end of Route. The edge restores the Request-URI from the
// last Route, removes it, and routes by the token in the URI that was the Request-URI.
TEST_F(Routing, StrictRoutedRequestFromTheCoreIsRestoredAndItsTokenRoutes) {
  const std::string ours = "sip:" + token_of(kBob) + "@10.0.0.1:5060;transport=tcp;lr";
  from_core(req("BYE " + ours + " SIP/2.0", "Route: <sip:bob@203.0.113.5:40312;transport=tcp>\n", kCoreVia,
                {}, "BYE", "b1"));
  const FakeNetwork::Sent s = one();
  ASSERT_FALSE(s.to_core) << s.bytes;
  EXPECT_EQ(s.flow, kBob);
  Out fwd(s.bytes);
  EXPECT_EQ(fwd.msg().request_uri(), "sip:bob@203.0.113.5:40312;transport=tcp");
  EXPECT_TRUE(fwd.values(HeaderId::route).empty());
  EXPECT_EQ(proxy_->stats().incoming_via_token, 1u);
}

// alice strict-routes her BYE: our UA-facing URI (her token) in the Request-URI, the rest of the
// route set and the remote target in Route, all on one line. The core gets the request for the
// remote target with both of our values gone.
TEST_F(Routing, StrictRoutedRequestFromAClientGoesToTheCoreForTheRemoteTarget) {
  const std::string ours = "sip:" + token_of(kAlice) + "@192.0.2.10:5060;lr";
  from_client(kAlice, req("BYE " + ours + " SIP/2.0",
                          "Route: <sip:10.0.0.1:5060;transport=tcp;lr>, <sip:dave@198.18.5.5:5060>\n",
                          kAliceVia, {}, "BYE", "b1"));
  const FakeNetwork::Sent s = one();
  ASSERT_TRUE(s.to_core) << s.bytes;
  Out fwd(s.bytes);
  EXPECT_EQ(fwd.msg().request_uri(), "sip:dave@198.18.5.5:5060");
  EXPECT_TRUE(fwd.values(HeaderId::route).empty());
  EXPECT_EQ(proxy_->stats().outgoing_via_token, 1u);
}

// The remote target on a line of its own below other Route lines; a strict router that stripped
// `lr` is recognised by the token-shaped user part.
TEST_F(Routing, StrictRoutedRequestWithoutLrAndTheTargetOnItsOwnLine) {
  const std::string ours = "sip:" + token_of(kAlice) + "@192.0.2.10:5060";
  from_client(kAlice, req("BYE " + ours + " SIP/2.0",
                          "Route: <sip:10.0.0.1:5060;transport=tcp;lr>\nRoute: <sip:dave@198.18.5.5:5060>\n",
                          kAliceVia, {}, "BYE", "b1"));
  const FakeNetwork::Sent s = one();
  ASSERT_TRUE(s.to_core) << s.bytes;
  Out fwd(s.bytes);
  EXPECT_EQ(fwd.msg().request_uri(), "sip:dave@198.18.5.5:5060");
  EXPECT_TRUE(fwd.values(HeaderId::route).empty());
}

// A Request-URI naming a user at the edge's address (a phone whose domain is the edge) is no
// Record-Route URI of ours: no lr, no token. It is forwarded as it is.
TEST_F(Routing, ARequestForAUserAtTheEdgesAddressIsNotStrictRouting) {
  from_client(kAlice,
              req("INVITE sip:dave@192.0.2.10:5060 SIP/2.0", "Route: <sip:192.0.2.10:5060;lr>\n", kAliceVia));
  const FakeNetwork::Sent s = one();
  ASSERT_TRUE(s.to_core) << s.bytes;
  Out fwd(s.bytes);
  EXPECT_EQ(fwd.msg().request_uri(), "sip:dave@192.0.2.10:5060");
  EXPECT_TRUE(fwd.values(HeaderId::route).empty());
}

// ---- token-shaped user parts -----------------------------------------------------------------

TEST(TokenShape, TheLineBetweenATokenAndAUserName) {
  using flow::token_shaped;
  EXPECT_FALSE(token_shaped(""));
  EXPECT_FALSE(token_shaped("alice"));
  EXPECT_FALSE(token_shaped(std::string(21, 'A')));  // shorter than a tag alone
  EXPECT_TRUE(token_shaped(std::string(22, 'A')));
  EXPECT_TRUE(token_shaped(std::string(80, 'z')));
  EXPECT_FALSE(token_shaped(std::string(81, 'z')));
  EXPECT_TRUE(token_shaped(std::string(44, '-') + "_9=="));  // padded
  EXPECT_FALSE(token_shaped(std::string(44, 'A') + "==="));  // three '=' is no padding
  EXPECT_FALSE(token_shaped(std::string(22, 'A') + "=A"));   // '=' only at the end
  EXPECT_FALSE(token_shaped(std::string(45, 'A') + "+"));    // standard base64 (Kamailio)
  EXPECT_FALSE(token_shaped(std::string(45, 'A') + "/"));
  EXPECT_FALSE(token_shaped(std::string(43, 'A') + "%41"));  // escaped
  EXPECT_FALSE(token_shaped("+4930123456789012345678"));     // a phone number
}

// An outbound proxy configured as sip:<user>@edge;lr: popped like a Route of ours without a
// token, the request goes on to the core.
TEST_F(Routing, AUserPartThatIsNoTokenIsLooseRoutedToTheCore) {
  for (const std::string& user :
       {std::string("alice"), std::string(21, 'A'), std::string(45, 'A') + "+", std::string(81, 'A')}) {
    SCOPED_TRACE(user);
    make(lab_config());
    from_client(kBob, req("INVITE sip:dave@example.test SIP/2.0",
                          "Route: <sip:" + user + "@192.0.2.10:5060;transport=tcp;lr>\n", kBobVia));
    const FakeNetwork::Sent s = one();
    ASSERT_TRUE(s.to_core) << s.bytes;
    Out fwd(s.bytes);
    EXPECT_TRUE(fwd.values(HeaderId::route).empty());
    EXPECT_EQ(fwd.msg().request_uri(), "sip:dave@example.test");
  }
}

// Token-shaped but not a token of ours (too short for a v1 layout, padded, a flipped MAC
// character): 403, never forwarded.
TEST_F(Routing, ATokenShapedUserPartThatFailsVerificationIs403) {
  std::string flipped = token_of(kBob);
  flipped[30] = flipped[30] == 'A' ? 'B' : 'A';
  for (const std::string& user :
       {std::string(22, 'A'), token_of(kBob) + "==", flipped, std::string(80, 'A')}) {
    SCOPED_TRACE(user);
    from_client(kBob, req("INVITE sip:dave@example.test SIP/2.0",
                          "Route: <sip:" + user + "@192.0.2.10:5060;transport=tcp;lr>\n", kBobVia));
    const FakeNetwork::Sent s = one();
    ASSERT_FALSE(s.to_core) << s.bytes;
    EXPECT_EQ(Out(s.bytes).status(), 403);
  }
}

// From the core, a Route of ours with a user name is a Route without a token: nothing names a
// client flow, 404 as for our bare URI (not 403).
TEST_F(Routing, FromTheCoreAUserPartThatIsNoTokenIs404NotForbidden) {
  from_core(req("INVITE sip:dave@example.test SIP/2.0", "Route: <sip:alice@10.0.0.1:5060;transport=tcp;lr>\n",
                kCoreVia));
  const FakeNetwork::Sent s = one();
  ASSERT_TRUE(s.to_core) << "answered to the core, not sent to a flow";
  EXPECT_EQ(Out(s.bytes).status(), 404);
}

// ---- RFC 5658: one Record-Route or two, by address, port and transport -----------------------

struct Sides {
  AdvertisedAddress client, core;
  std::size_t expected;
};

TEST_F(Routing, DoubleRecordRouteWheneverTheTwoSidesDifferAlsoOnOneTransport) {
  for (const Sides& t :
       {Sides{{Transport::tcp, "192.0.2.10", 5060}, {Transport::tcp, "10.0.0.1", 5060}, 2},
        Sides{{Transport::tcp, "192.0.2.10", 5060}, {Transport::tcp, "192.0.2.10", 5070}, 2},
        Sides{{Transport::tcp, "192.0.2.10", 5060}, {Transport::tls, "192.0.2.10", 5060}, 2},
        Sides{{Transport::tcp, "192.0.2.10", 5060}, {Transport::tcp, "192.0.2.10", 5060}, 1},
        Sides{{Transport::tcp, "EDGE.example", 5060}, {Transport::tcp, "edge.example", 5060}, 1},
        Sides{{Transport::tcp, "2001:db8::10", 5060}, {Transport::tcp, "2001:DB8:0:0::10", 5060}, 1},
        Sides{{Transport::tcp, "2001:db8::10", 5060}, {Transport::tcp, "2001:db8::11", 5060}, 2}}) {
    SCOPED_TRACE(t.core.host + ":" + std::to_string(t.core.port) + " " + std::to_string(t.expected));
    ProxyConfig cfg = lab_config();
    cfg.client_side = {t.client};
    cfg.core_side = t.core;
    make(cfg);
    from_client(kBob, req("INVITE sip:dave@example.test SIP/2.0", "", kBobVia));
    const FakeNetwork::Sent s = one();
    ASSERT_TRUE(s.to_core) << s.bytes;
    Out fwd(s.bytes);
    const std::string token = token_of(kBob);
    const auto uri = [](const AdvertisedAddress& a, const std::string& user) {
      std::string u = "sip:";
      if (!user.empty()) u.append(user).append("@");
      if (a.host.find(':') == std::string::npos) {
        u += a.host;
      } else {
        u.append("[").append(a.host).append("]");
      }
      u.append(":").append(std::to_string(a.port));
      u += a.transport == Transport::tls ? ";transport=tls;lr" : ";transport=tcp;lr";
      return u;
    };
    ASSERT_EQ(fwd.values(HeaderId::record_route).size(), t.expected);
    if (t.expected == 2) {
      // The core-facing value on top (the core's side), the UA-facing one with the token below.
      EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0), uri(t.core, ""));
      EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 1), uri(t.client, token));
    } else {
      EXPECT_EQ(fwd.route_uri(HeaderId::record_route, 0), uri(t.core, token));
    }
  }
}

// ---- 513 when our headers take a request over the core side's limit --------------------------

// The size of what the edge sends the core for bob's INVITE with `body`, with no limit in the way.
class CoreSize : public Routing {
 protected:
  std::size_t forwarded_size(const std::string& request) {
    from_client(kBob, request);
    const FakeNetwork::Sent s = one();
    EXPECT_TRUE(s.to_core);
    return s.bytes.size();
  }
};

TEST_F(CoreSize, ExactlyAtTheLimitIsSentOneByteOverIs513) {
  const std::string inv = req("INVITE sip:dave@example.test SIP/2.0", "", kBobVia, std::string(600, 'v'));
  const std::size_t n = forwarded_size(inv);
  ASSERT_GT(n, inv.size() + 100) << "our Via and Record-Routes are added";
  ProxyConfig cfg = lab_config();
  cfg.limits.max_core_message_size = n;
  make(cfg);
  EXPECT_EQ(forwarded_size(inv), n);
  cfg.limits.max_core_message_size = n - 1;
  make(cfg);
  from_client(kBob, inv);
  const FakeNetwork::Sent s = one();
  ASSERT_FALSE(s.to_core) << "nothing too large goes to the core";
  EXPECT_EQ(s.flow, kBob);
  EXPECT_EQ(Out(s.bytes).status(), 513);
}

// With the default limit (65535, the stream framer's), a request that arrived within the limit
// but is too large once our headers are in gets 513; the edge goes on serving.
TEST_F(CoreSize, ARequestNearTheDefaultLimitGets513AndTheNextOneGoesThrough) {
  const std::string empty = req("INVITE sip:dave@example.test SIP/2.0", "", kBobVia, " ");
  const std::size_t room = ProxyLimits{}.max_core_message_size - empty.size();
  const std::string big =
      req("INVITE sip:dave@example.test SIP/2.0", "", kBobVia, std::string(room - 20, 'v'));
  ASSERT_LE(big.size(), sip::Limits{}.max_message_size) << "the edge reads it";
  from_client(kBob, big);
  const FakeNetwork::Sent s = one();
  ASSERT_FALSE(s.to_core);
  EXPECT_EQ(Out(s.bytes).status(), 513);
  from_client(kBob, req("INVITE sip:dave@example.test SIP/2.0", "", kBobVia, "v=0\r\n"));
  EXPECT_TRUE(one().to_core);
}

}  // namespace
}  // namespace edge::net::testing
