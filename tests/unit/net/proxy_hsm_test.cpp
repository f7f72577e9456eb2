// The edge proxy over a real SoftHSM key set: tokens in Path, HSM calls only where the caches cannot answer,
// 403 on tampering, rotation.
#include "proxy_test_support.h"

#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset_mac.h>
#include <edge/test/softhsm_fixture.h>

namespace edge::net::testing {
namespace {

using sip::HeaderId;

constexpr const char* kSet = "flows";

std::string core_invite(std::string_view token) {
  return crlf(
      fill("INVITE sip:bob@203.0.113.5:40312;transport=tcp;ob SIP/2.0\n"
           "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKhsm1\n"
           "Route: <sip:{tok}@10.0.0.1:5060;transport=tcp;lr;ob>\n"
           "Max-Forwards: 69\n"
           "From: <sip:dave@example.test>;tag=d1\n"
           "To: <sip:bob@example.test>\n"
           "Call-ID: hsm-1@10.0.0.2\n"
           "CSeq: 1 INVITE\n"
           "Contact: <sip:dave@10.0.0.2>\n"
           "Content-Length: 0\n\n",
           {{"tok", std::string(token)}}));
}

// One SoftHSM token per test with key set "flows" v1; the daemon's wiring in small.
class ProxyHsm : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = std::make_unique<hsm::Hsm>(token_.config());
    hsm_->keysets().create(kSet, 3);
    mac_ = hsm_->mac_for(kSet);
    mac_->refresh();
    restart_front_end();
  }
  // A new codec and proxy on the same HSM, as after a process restart (empty caches).
  void restart_front_end() {
    proxy_.reset();
    codec_ = std::make_shared<flow::TokenCodec>(mac_);
    proxy_ = std::make_unique<EdgeProxy>(std::make_shared<ProxyState>(), lab_config(), codec_);
    out_ = FakeNetwork{};
    out_.add_flow(kBob);
  }
  hsm::OpCountersSnapshot ops() const { return hsm_->counters().snapshot(); }
  void from_client(const FlowKey& f, const std::string& text) {
    proxy_->on_message({f, false, text, {}}, out_);
  }
  void from_core(const std::string& text) { proxy_->on_message({kCore, true, text, {}}, out_); }

  test::SoftHsmToken token_;
  std::unique_ptr<hsm::Hsm> hsm_;
  std::shared_ptr<hsm::KeySetMac> mac_;
  std::shared_ptr<flow::TokenCodec> codec_;
  std::unique_ptr<EdgeProxy> proxy_;
  FakeNetwork out_;
};

TEST_F(ProxyHsm, RegisterMintsOnceThenTheTokenRoutesWithoutFurtherHsmCalls) {
  const auto start = ops();
  from_client(kBob, register_tcp());
  Out reg(out_.take().bytes);
  const std::string token = reg.route_user(HeaderId::path, 0);
  EXPECT_EQ(ops().sign - start.sign, 1u);

  // Re-REGISTER on the same flow, and the core's INVITE with the Path token: no HSM call.
  const auto after_mint = ops();
  from_client(kBob, register_tcp({}, "path, outbound", "38123"));
  EXPECT_EQ(Out(out_.take().bytes).route_user(HeaderId::path, 0), token);
  from_core(core_invite(token));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kBob);
  EXPECT_EQ(ops().sign, after_mint.sign);
  EXPECT_EQ(ops().verify, after_mint.verify);
  EXPECT_EQ(proxy_->stats().mints_avoided, 1u);
  EXPECT_EQ(proxy_->stats().verifies_avoided, 1u);
}

TEST_F(ProxyHsm, OneChangedCharacterIs403AfterAskingTheHsm) {
  from_client(kBob, register_tcp());
  std::string token = Out(out_.take().bytes).route_user(HeaderId::path, 0);
  token[30] = token[30] == 'A' ? 'B' : 'A';
  const auto before = ops();
  from_core(core_invite(token));
  Out resp(out_.take().bytes);
  EXPECT_EQ(resp.status(), 403);
  EXPECT_EQ(ops().verify - before.verify, 1u);
}

TEST_F(ProxyHsm, ATokenFromBeforeARestartStillRoutesWithOneHsmVerify) {
  from_client(kBob, register_tcp());
  const std::string token = Out(out_.take().bytes).route_user(HeaderId::path, 0);
  restart_front_end();
  const auto before = ops();
  from_core(core_invite(token));
  EXPECT_EQ(out_.take().flow, kBob);
  EXPECT_EQ(ops().verify - before.verify, 1u);
  // Verified once, then cached.
  from_core(core_invite(token));
  EXPECT_EQ(out_.take().flow, kBob);
  EXPECT_EQ(ops().verify - before.verify, 1u);
}

TEST_F(ProxyHsm, AfterRotationOldTokensRouteAndNewRegistrationsGetTheNewVersion) {
  from_client(kBob, register_tcp());
  const std::string old_token = Out(out_.take().bytes).route_user(HeaderId::path, 0);
  hsm_->keysets().rotate(kSet);
  mac_->refresh();
  from_client(kBob, register_tcp({}, "path, outbound", "38124"));
  const std::string new_token = Out(out_.take().bytes).route_user(HeaderId::path, 0);
  EXPECT_NE(new_token, old_token);
  from_core(core_invite(old_token));
  EXPECT_EQ(out_.take().flow, kBob);
  from_core(core_invite(new_token));
  EXPECT_EQ(out_.take().flow, kBob);
}

}  // namespace
}  // namespace edge::net::testing
