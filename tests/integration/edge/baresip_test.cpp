// Issue "SIP outbound edge front end", test 9: a real outbound client (baresip) registers through the edge
// and takes a call.
#include "edge/test/sip/baresip.h"
#include "edge_fixture.h"

namespace edge::test {
namespace {

bool is_request(const SipTraceEntry& e, std::string_view method) {
  return e.message.is_request() && e.message.method() == method;
}

// bob (on the core) calls the phone: the 200 comes from baresip, and the INVITE, the ACK
// and the BYE all come down the phone's own flow from the edge's `edge_end`.
void call_down_the_flow(BaresipProcess& phone, TestUa& bob, const Endpoint& flow, const Endpoint& edge_end) {
  const SipMessage invite = bob.make_invite(phone.aor());
  bob.send(invite);
  const SipMessage answer = bob.receive_response("INVITE", Millis(10000));
  ASSERT_EQ(answer.status(), 200) << answer.summary();
  EXPECT_TRUE(answer.header("Server").value_or("").starts_with("baresip")) << answer.summary();
  EXPECT_FALSE(answer.body().empty()) << "no SDP answer";

  const auto received =
      phone.wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "INVITE"); }, Millis(0));
  ASSERT_TRUE(received);
  EXPECT_EQ(received->destination, flow) << "the INVITE did not come down baresip's own flow";
  EXPECT_EQ(received->source, edge_end);
  EXPECT_EQ(received->message.call_id(), invite.call_id());

  Dialog d = Dialog::as_uac(invite, answer);
  bob.send(bob.make_ack(d));
  const auto ack =
      phone.wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "ACK"); }, Millis(5000));
  ASSERT_TRUE(ack) << "the ACK never reached baresip";
  EXPECT_EQ(ack->destination, flow);
  EXPECT_TRUE(phone.wait_for_output("Call established", Millis(5000)));

  bob.send(bob.make_in_dialog(d, "BYE"));
  EXPECT_EQ(bob.receive_response("BYE", Millis(5000)).status(), 200);
  const auto bye =
      phone.wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "BYE"); }, Millis(0));
  ASSERT_TRUE(bye);
  EXPECT_EQ(bye->destination, flow);
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
  call_down_the_flow(*phone_, bob, flow, edge_->endpoint(Transport::tcp));

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("flows_tcp"), 1u);
  EXPECT_EQ(s.number("r430"), 0u);
  EXPECT_EQ(s.number("r403"), 0u);
}

// Issue 17: baresip as a plain RFC 3261 phone (no sipnat=outbound, no uuid module):
// its REGISTER carries no +sip.instance, no reg-id and no Supported header, only a
// pre-loaded Route to the edge. With sip.path_without_supported (the default) the
// edge's Path still reaches the Kamailio registrar, which routes the call by it down
// baresip's own flow, over UDP and over TCP. Without that Path the registrar binds
// the edge's core-link address and the call dies at the edge with 404.
class PlainBaresipThroughEdge : public EdgeTest, public ::testing::WithParamInterface<Transport> {
 protected:
  void SetUp() override {
    EdgeTest::SetUp();
    BaresipOptions o;
    o.outbound = edge_->endpoint(GetParam());
    o.transport = GetParam();
    o.sip_outbound = false;
    phone_ = std::make_unique<BaresipProcess>(o);
    dump_.add("baresip output", [this] { return phone_ ? phone_->output() : std::string(); });
  }
  void TearDown() override {
    EdgeTest::TearDown();
    phone_.reset();
  }
  std::unique_ptr<BaresipProcess> phone_;
};

TEST_P(PlainBaresipThroughEdge, RegistersWithoutOutboundAndAnswersACallOnItsFlow) {
  const Transport t = GetParam();
  const auto registered = phone_->wait_registered(Millis(10000));
  ASSERT_TRUE(registered) << "baresip did not register through the edge";
  EXPECT_EQ(registered->source, edge_->endpoint(t)) << "the 200 came from the edge";
  const SipMessage& ok = registered->message;
  EXPECT_EQ(ok.header("Server"), kCoreServer);
  EXPECT_FALSE(ok.has_header("Flow-Timer")) << "not an outbound registration";
  const Endpoint flow = registered->destination;

  // What makes it a plain phone: the REGISTER as baresip sent it.
  const auto reg =
      phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "REGISTER"); }, Millis(0));
  ASSERT_TRUE(reg);
  const SipMessage& r = reg->message;
  EXPECT_FALSE(r.has_header("Supported")) << r.summary() << ": no Supported: path to ask for Path";
  const auto contacts = r.header_values("Contact");
  ASSERT_EQ(contacts.size(), 1u);
  EXPECT_FALSE(header_param(contacts[0], "reg-id")) << contacts[0];
  EXPECT_FALSE(header_param(contacts[0], "+sip.instance")) << contacts[0];
  EXPECT_EQ(reg->source, flow);

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  call_down_the_flow(*phone_, bob, flow, edge_->endpoint(t));

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("r430"), 0u);
  EXPECT_EQ(s.number("r403"), 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, PlainBaresipThroughEdge,
                         ::testing::Values(Transport::udp, Transport::tcp),
                         [](const ::testing::TestParamInfo<Transport>& p) {
                           return std::string(uri_transport(p.param));
                         });

}  // namespace
}  // namespace edge::test
