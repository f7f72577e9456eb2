// Issue 8 "Tokens" against the real edged: truncated, padded, bit-flipped tokens, another format version,
// an unknown or retired key version, a token replayed from another source address (RFC 5626 §5.3
// incoming vs outgoing), a token minted by another key set (another edge's HSM).
#include <thread>

#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// The token with the 6-bit group at character i XORed with `bits` (base64url stays well-formed).
std::string flip(std::string token, std::size_t i, int bits) {
  const auto v = kB64.find(token.at(i));
  token[i] = kB64[(v ^ static_cast<std::size_t>(bits)) & 63];
  return token;
}

class Tokens : public HostileTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o = HostileTest::edged_options();
    o.extra.push_back({"sip.client_to_client_direct", "true"});
    return o;
  }
  void SetUp() override {
    HostileTest::SetUp();
    alice_ = &ua("alice");
    const SipMessage ok = register_through_edge(*alice_, Transport::tcp);
    ASSERT_EQ(ok.status(), 200);
    token_ = path_token(ok);
    ASSERT_EQ(token_key_version(token_), 1u);
  }
  // An INVITE from a fresh client (another source address) whose Route names `token` on our TCP listener;
  // returns the edge's answer, or nullopt when the INVITE was forwarded (it then reaches alice).
  std::optional<SipMessage> invite_with(const std::string& token, const char* source = "127.0.0.2") {
    TestUa& m = ua("mallory" + std::to_string(++serial_));
    ConnectOptions co;
    co.local = Endpoint{boost::asio::ip::make_address(source), 0};
    m.connect(Transport::tcp, edge_->endpoint(Transport::tcp), co);
    SipMessage inv = m.make_invite(alice_->aor());
    inv.set_header("Route", "<sip:" + token + "@127.0.0.1:5060;transport=tcp;lr>");
    m.send(inv);
    for (;;) {
      auto r = m.try_receive(Millis(3000));
      if (!r) return std::nullopt;
      if (r->is_response() && r->status() >= 200) {
        m.close();
        return r;
      }
    }
  }
  void expect_403(const std::string& token, const std::string& what) {
    SCOPED_TRACE(what);
    const auto r = invite_with(token);
    ASSERT_TRUE(r.has_value()) << "no answer";
    EXPECT_EQ(r->status(), 403) << r->summary();
    EXPECT_NE(r->header("Server").value_or(""), kCoreServer) << "the core answered, not the edge";
    EXPECT_FALSE(alice_->try_receive(Millis(200))) << "a bad token reached alice";
  }

  TestUa* alice_ = nullptr;
  std::string token_;
};

TEST_F(Tokens, MalformedTokensGet403) {
  expect_403(token_.substr(0, token_.size() - 3), "truncated by 3 characters");
  // Shorter than 22 characters is no token at all (docs/token-format.md, "Token-shaped user
  // parts"): loose routing, tests/unit/net/proxy_routing_test.cpp.
  expect_403(token_.substr(0, 22), "truncated to 22 characters, the shortest token shape");
  expect_403(token_ + "AAAA", "padded with 4 characters");
  expect_403(token_ + "==", "padded with '='");
  expect_403(flip(token_, token_.size() - 2, 1), "one bit flipped in the MAC");
  expect_403(flip(token_, token_.size() / 2, 8), "one bit flipped in the addresses");
  expect_403(flip(token_, 1, 0x30), "format version 2 instead of 1");
  expect_403(flip(token_, 5, 1), "unknown key version (v17)");
  expect_403(flip(token_, 2, 32), "unknown key version (high byte)");
  expect_403(std::string(token_.size(), 'A'), "all zero bytes");
  // The flow is unharmed: the real token still routes to alice.
  EXPECT_FALSE(invite_with(token_).has_value());
  EXPECT_EQ(alice_->receive_request("INVITE").method(), "INVITE");
  expect_unharmed();
}

// RFC 5626 §5.3: the token of alice's flow, presented on another connection from another address, is
// "incoming": it can only send the request to alice's flow (as the core would), never make the sender
// alice. Once alice's flow is gone, the same token gets 430.
TEST_F(Tokens, ReplayedFromAnotherAddressIsIncomingOnlyAnd430OnceTheFlowIsGone) {
  EXPECT_FALSE(invite_with(token_, "127.0.0.3").has_value()) << "not forwarded";
  const SipMessage got = alice_->receive_request("INVITE");
  EXPECT_EQ(got.header_values("Via").size(), 2u)
      << "edge Via + the sender's: it came from mallory, not the core";
  alice_->close();
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("flows_tcp") == 1; }));
  const auto r = invite_with(token_, "127.0.0.3");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status(), 430) << r->summary();
  expect_unharmed();
}

// A retired key version verifies nothing, also for a flow that still holds a token of that version.
TEST_F(Tokens, RetiredKeyVersionIsRefused) {
  std::string out;
  ASSERT_EQ(edge_->edgectl({"keyset", "rotate", "sipflow"}, &out), 0) << out;
  ASSERT_EQ(edge_->edgectl({"apply"}, &out), 0) << out;  // v2 mints now; v1 still verifies
  EXPECT_FALSE(invite_with(token_).has_value()) << "v1 must still verify before retirement";
  alice_->receive_request("INVITE");
  ASSERT_EQ(edge_->edgectl({"keyset", "retire", "sipflow", "1"}, &out), 0) << out;
  // Retirement acts on the HSM at once; an apply is only needed when it staged something.
  if (edge_->edgectl({"apply"}, &out) != 0) {
    EXPECT_NE(out.find("nothing staged"), std::string::npos) << out;
  }
  expect_403(token_, "retired key version 1");
  // A new registration gets a v2 token that routes.
  const SipMessage ok = alice_->register_with();
  ASSERT_EQ(ok.status(), 200);
  EXPECT_EQ(token_key_version(path_token(ok)), 2u);
  EXPECT_FALSE(invite_with(path_token(ok)).has_value());
  EXPECT_EQ(alice_->receive_request("INVITE").method(), "INVITE");
  // The bystander's binding in the core carries a v1 token too: it re-registers (as phones do).
  EXPECT_EQ(bystander_->register_with().status(), 200);
  expect_unharmed();
}

// A rotation destroys the versions beyond `retain` (3): a token of the destroyed version gets 403
// at once, before any apply (the agent refreshes the front end's key-set view on that rotation).
TEST_F(Tokens, VersionDestroyedByARotationIsRefusedAtOnce) {
  std::string out;
  for (int i = 0; i < 2; ++i) {  // v2 then v3 mint; v1 is no longer in use but still verifies
    ASSERT_EQ(edge_->edgectl({"keyset", "rotate", "sipflow"}, &out), 0) << out;
    ASSERT_EQ(edge_->edgectl({"apply"}, &out), 0) << out;
  }
  EXPECT_FALSE(invite_with(token_).has_value()) << "v1 must still verify while it is retained";
  alice_->receive_request("INVITE");
  ASSERT_EQ(edge_->edgectl({"keyset", "rotate", "sipflow"}, &out), 0) << out;  // v4 staged; v1 destroyed
  expect_403(token_, "key version 1 destroyed by the rotation");
  const SipMessage ok = alice_->register_with();
  ASSERT_EQ(ok.status(), 200);
  EXPECT_EQ(token_key_version(path_token(ok)), 3u) << "v4 is only staged; v3 still mints";
  EXPECT_EQ(bystander_->register_with().status(), 200);
  expect_unharmed();
}

// A token minted by another edge (its own lab HSM token, so another key set with the same name and
// version): the MAC does not verify here.
TEST_F(Tokens, TokenOfAnotherKeySetIsRefused) {
  EdgedOptions o;
  o.udp_port = 5070;
  o.tcp_port = 5070;
  o.tls_port = 0;
  o.ws_port = 5072;
  o.wss_port = 0;
  EdgedProcess other(o);
  TestUa& bob = ua("bob");
  bob.connect(Transport::tcp, other.endpoint(Transport::tcp));
  const SipMessage ok = bob.register_with();
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  std::string foreign = path_token(ok);
  ASSERT_EQ(token_key_version(foreign), 1u);
  bob.close();
  EXPECT_EQ(other.stop(), 0);
  expect_403(foreign, "minted by another key set");
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
