// Proves the harness with a real outbound client: baresip registers with Kamailio and answers a call from the test UA.
#include <gtest/gtest.h>

#include "edge/test/sip/baresip.h"
#include "edge/test/sip/gtest_support.h"
#include "edge/test/sip/kamailio.h"
#include "edge/test/sip/test_ua.h"

namespace edge::test {
namespace {

class BaresipHarnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    core_ = std::make_unique<KamailioProcess>();
    dump_.add("kamailio log", [this] { return core_->log(); });
    BaresipOptions o;
    o.outbound = core_->endpoint(Transport::tcp);
    o.transport = Transport::tcp;
    phone_ = std::make_unique<BaresipProcess>(o);
    dump_.add("baresip output", [this] { return phone_->output(); });
  }
  void TearDown() override { dump_.dump(); }

  std::unique_ptr<KamailioProcess> core_;
  std::unique_ptr<BaresipProcess> phone_;
  std::unique_ptr<TestUa> bob_;
  FailureDump dump_;
};

bool is_request(const SipTraceEntry& e, std::string_view method) {
  return e.message.is_request() && e.message.method() == method;
}

// baresip's outbound account sends an RFC 5626 REGISTER and the core accepts it as one.
TEST_F(BaresipHarnessTest, RegistersOverTcpAsAnOutboundClient) {
  auto ok = phone_->wait_registered(Millis(10000));
  ASSERT_TRUE(ok) << "baresip did not register";
  EXPECT_EQ(ok->message.header("Server"), "core-kamailio");
  EXPECT_TRUE(ok->message.has_token("Require", "outbound"));
  EXPECT_EQ(ok->source, core_->endpoint(Transport::tcp));

  auto reg = phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "REGISTER"); }, Millis(0));
  ASSERT_TRUE(reg);
  const SipMessage& m = reg->message;
  EXPECT_EQ(reg->transport, "TCP");
  EXPECT_EQ(reg->destination, core_->endpoint(Transport::tcp));
  auto contact = m.header("Contact").value_or("");
  EXPECT_EQ(header_param(contact, "+sip.instance"), "\"<" + phone_->instance_urn() + ">\"");
  EXPECT_EQ(header_param(contact, "reg-id"), "1");
  EXPECT_TRUE(m.has_token("Supported", "outbound"));
  EXPECT_TRUE(m.has_token("Supported", "path"));
  // The outbound proxy setting becomes a pre-loaded Route.
  EXPECT_EQ(uri_host_port(uri_of(m.header("Route").value_or(""))), core_->endpoint(Transport::tcp).host_port());
  // The REGISTER's own 200 came back on the connection it was sent on: that is the flow.
  EXPECT_EQ(ok->destination, reg->source);
}

// A call from the test UA: baresip auto-answers, gets the ACK, and a BYE ends it.
TEST_F(BaresipHarnessTest, AutoAnswersACallFromTheTestUa) {
  auto registered = phone_->wait_registered(Millis(10000));
  ASSERT_TRUE(registered) << "baresip did not register";
  const Endpoint flow = registered->destination;  // baresip's end of its registration connection

  bob_ = std::make_unique<TestUa>("bob");
  TestUa& bob = *bob_;
  dump_.add("UA bob", [&bob] { return bob.transcript(); });
  bob.connect(Transport::tcp, core_->endpoint(Transport::tcp));
  SipMessage invite = bob.make_invite(phone_->aor());
  bob.send(invite);
  SipMessage ok = bob.receive_response("INVITE", Millis(10000));
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_TRUE(ok.header("Server").value_or("").starts_with("baresip"));
  EXPECT_FALSE(ok.body().empty());  // an SDP answer

  // The INVITE reached baresip over the connection it registered on.
  auto received = phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "INVITE"); }, Millis(0));
  ASSERT_TRUE(received);
  EXPECT_EQ(received->destination, flow);
  EXPECT_EQ(received->message.call_id(), invite.call_id());

  // baresip puts its end of the flow, not its listening port, into the dialog's
  // Contact, so in-dialog requests come down the same connection too.
  EXPECT_EQ(uri_host_port(uri_of(ok.header("Contact").value_or(""))), flow.host_port());

  Dialog d = Dialog::as_uac(invite, ok);
  bob.send(bob.make_ack(d));
  auto ack = phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "ACK"); }, Millis(5000));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->destination, flow);
  EXPECT_TRUE(phone_->wait_for_output("Call established", Millis(5000)));

  bob.send(bob.make_in_dialog(d, "BYE"));
  EXPECT_EQ(bob.receive_response("BYE", Millis(5000)).status(), 200);
  auto bye = phone_->wait_for_trace([](const SipTraceEntry& e) { return is_request(e, "BYE"); }, Millis(0));
  ASSERT_TRUE(bye);
  EXPECT_EQ(bye->destination, flow);
}

}  // namespace
}  // namespace edge::test
