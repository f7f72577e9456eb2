// Issue "SIP outbound edge front end", test 9: a real outbound client (baresip) registers through the edge
// and takes a call.
#include "edge/test/sip/baresip.h"
#include "edge_fixture.h"

namespace edge::test {
namespace {

bool is_request(const SipTraceEntry& e, std::string_view method) {
  return e.message.is_request() && e.message.method() == method;
}

class BaresipThroughEdge : public EdgeTest {
 protected:
  void SetUp() override {
    EdgeTest::SetUp();
    BaresipOptions o;
    o.outbound = edge_->endpoint(Transport::tcp);
    o.transport = Transport::tcp;
    phone_ = std::make_unique<BaresipProcess>(o);
    dump_.add("baresip output", [this] { return phone_ ? phone_->output() : std::string(); });
  }
  void TearDown() override {
    EdgeTest::TearDown();  // dumps while baresip still runs, then stops edged and the core
    phone_.reset();
  }
  std::unique_ptr<BaresipProcess> phone_;
};

TEST_F(BaresipThroughEdge, RegistersThroughTheEdgeAndAnswersACallOnItsFlow) {
  const auto registered = phone_->wait_registered(Millis(10000));
  ASSERT_TRUE(registered) << "baresip did not register through the edge";
  const SipMessage& ok = registered->message;
  EXPECT_EQ(ok.header("Server"), kCoreServer);
  EXPECT_TRUE(ok.has_token("Require", "outbound"));
  EXPECT_EQ(ok.header("Flow-Timer"), "30");
  EXPECT_EQ(registered->source, edge_->endpoint(Transport::tcp)) << "the 200 came from the edge";
  const auto paths = ok.header_values("Path");
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(token_key_version(uri_user(uri_of(paths[0]))), 1u) << paths[0];
  EXPECT_TRUE(uri_param(uri_of(paths[0]), "ob")) << paths[0];
  const Endpoint flow = registered->destination;  // baresip's end of its connection to the edge

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  const SipMessage invite = bob.make_invite(phone_->aor());
  bob.send(invite);
  const SipMessage answer = bob.receive_response("INVITE", Millis(10000));
  ASSERT_EQ(answer.status(), 200) << answer.summary();
  EXPECT_TRUE(answer.header("Server").value_or("").starts_with("baresip")) << answer.summary();
  EXPECT_FALSE(answer.body().empty()) << "no SDP answer";

  const auto received =
      phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "INVITE"); }, Millis(0));
  ASSERT_TRUE(received);
  EXPECT_EQ(received->destination, flow) << "the INVITE did not come down baresip's own flow";
  EXPECT_EQ(received->source, edge_->endpoint(Transport::tcp));
  EXPECT_EQ(received->message.call_id(), invite.call_id());

  Dialog d = Dialog::as_uac(invite, answer);
  bob.send(bob.make_ack(d));
  const auto ack =
      phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "ACK"); }, Millis(5000));
  ASSERT_TRUE(ack) << "the ACK never reached baresip";
  EXPECT_EQ(ack->destination, flow);
  EXPECT_TRUE(phone_->wait_for_output("Call established", Millis(5000)));

  bob.send(bob.make_in_dialog(d, "BYE"));
  EXPECT_EQ(bob.receive_response("BYE", Millis(5000)).status(), 200);
  const auto bye =
      phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "BYE"); }, Millis(0));
  ASSERT_TRUE(bye);
  EXPECT_EQ(bye->destination, flow);

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("flows_tcp"), 1u);
  EXPECT_EQ(s.number("r430"), 0u);
  EXPECT_EQ(s.number("r403"), 0u);
}

}  // namespace
}  // namespace edge::test
