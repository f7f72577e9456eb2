// Every request gets the right final answer (483, 400, 503, 200 to OPTIONS for us); stray responses and
// garbage are dropped and counted.
#include "proxy_test_support.h"

#include <stdexcept>

namespace edge::net::testing {
namespace {

using sip::HeaderId;

std::string options(std::string_view ruri, int max_forwards,
                    std::string_view via_host = "203.0.113.5:40312") {
  return crlf(fill(
      "OPTIONS {ruri} SIP/2.0\n"
      "Via: SIP/2.0/TCP {via};branch=z9hG4bKopt{mf};rport\n"
      "Max-Forwards: {mf}\n"
      "From: <sip:bob@example.test>;tag=o1\n"
      "To: <{ruri}>\n"
      "Call-ID: opt-{mf}\n"
      "CSeq: 1 OPTIONS\n"
      "Content-Length: 0\n\n",
      {{"ruri", std::string(ruri)}, {"mf", std::to_string(max_forwards)}, {"via", std::string(via_host)}}));
}

class Errors : public ProxyFixture {};

TEST_F(Errors, MaxForwardsZeroIs483) {
  from_client(kBob, options("sip:carol@example.test", 0));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 483);
  // RFC 3581: the copied Via says where the request came from.
  EXPECT_EQ(resp.via(0).rport_value, std::optional<std::uint16_t>(40312));
  EXPECT_FALSE(resp.msg().first(HeaderId::to) == nullptr);
  EXPECT_EQ(proxy_->stats().r483, 1u);
}

TEST_F(Errors, MaxForwardsIsDecrementedOtherwise) {
  from_client(kBob, options("sip:carol@example.test", 1));
  Out fwd(out_.take().bytes);
  EXPECT_EQ(fwd.msg().max_forwards(), std::optional<std::uint32_t>(0));
}

TEST_F(Errors, OptionsAddressedToUsIsAnswered200EvenWithMaxForwardsZero) {
  from_client(kBob, options("sip:192.0.2.10:5060", 0));
  EXPECT_EQ(Out(out_.take().bytes).status(), 200);
  from_core(options("sip:10.0.0.1;transport=tcp", 70, "10.0.0.2:5060"));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_TRUE(s.to_core);
  EXPECT_EQ(Out(s.bytes).status(), 200);
  EXPECT_EQ(proxy_->stats().r200_options, 2u);
}

TEST_F(Errors, AckWithMaxForwardsZeroIsDroppedNotAnswered) {
  from_client(kBob, crlf("ACK sip:dave@10.0.0.2 SIP/2.0\n"
                         "Via: SIP/2.0/TCP 203.0.113.5:40312;branch=z9hG4bKack0\n"
                         "Max-Forwards: 0\n"
                         "From: <sip:bob@example.test>;tag=b1\n"
                         "To: <sip:dave@example.test>;tag=d1\n"
                         "Call-ID: ack-0\n"
                         "CSeq: 1 ACK\n"
                         "Content-Length: 0\n\n"));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_ack, 1u);
}

TEST_F(Errors, AnUnparseableRequestWithTheHeadersToAnswerGets400) {
  // Two Content-Length values: unparseable, but Via/From/To/Call-ID/CSeq are there.
  from_client(kAlice, crlf("MESSAGE sip:bob@example.test SIP/2.0\n"
                           "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKbad1;rport\n"
                           "Max-Forwards: 70\n"
                           "From: <sip:alice@example.test>;tag=a1\n"
                           "To: <sip:bob@example.test>\n"
                           "Call-ID: bad-1\n"
                           "CSeq: 1 MESSAGE\n"
                           "Content-Length: 0\n"
                           "Content-Length: 4\n\n"));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  EXPECT_EQ(s.flow, kAlice);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 400);
  EXPECT_EQ(resp.via(0).received, "198.51.100.7");
  EXPECT_EQ(resp.via(0).rport_value, std::optional<std::uint16_t>(5062));
  EXPECT_EQ(proxy_->stats().r400, 1u);
}

TEST_F(Errors, UdpGarbageIsDroppedAndCounted) {
  from_client(kAlice, "\x16\x03\x01 not sip at all\r\n\r\n");
  from_client(kAlice, crlf("INVITE sip:x SIP/2.0\nFrom: <sip:a@b>;tag=1\n\n"));  // no Via: nowhere to answer
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_unparseable, 2u);
  // A request with nothing but a Via still gets its 400 (issue 17: from whatever reads).
  from_client(kAlice, crlf("INVITE sip:x SIP/2.0\nVia: SIP/2.0/UDP 1.2.3.4\n\n"));
  EXPECT_EQ(Out(out_.take().bytes, false).status(), 400);
}

TEST_F(Errors, CoreUnreachableIs503WithRetryAfter) {
  out_.core_up = false;
  from_client(kBob, options("sip:carol@example.test", 70));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_FALSE(s.to_core);
  Out resp(s.bytes);
  EXPECT_EQ(resp.status(), 503);
  EXPECT_EQ(resp.header("Retry-After"), "5");
}

TEST_F(Errors, AResponseWhoseTopViaIsNotOursIsDroppedAndCounted) {
  from_core(
      crlf("SIP/2.0 200 OK\n"
           "Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bKnotours\n"
           "Via: SIP/2.0/TCP 203.0.113.5:40312;branch=z9hG4bKx\n"
           "From: <sip:bob@example.test>;tag=b1\n"
           "To: <sip:dave@example.test>;tag=d1\n"
           "Call-ID: stray-1\n"
           "CSeq: 1 MESSAGE\n"
           "Content-Length: 0\n\n"));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_response_not_ours, 1u);
}

TEST_F(Errors, AResponseWithAForgedBranchNamingAnotherFlowIsDropped) {
  from_client(kBob, options("sip:carol@example.test", 70));
  Out fwd(out_.take().bytes);
  std::string resp = answer(fwd.text(), 200);
  // Change one character of the encoded flow in our branch.
  const std::size_t at = resp.find(".f") + 6;
  resp[at] = resp[at] == 'A' ? 'B' : 'A';
  from_core(resp);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_response_not_ours, 1u);
}

TEST_F(Errors, AClientCannotAnswerAroundTheCoreWithABranchItSawInAVia) {
  // alice's request reaches the core (our Via names her flow)...
  from_client(kAlice, crlf("MESSAGE sip:bob@example.test SIP/2.0\n"
                           "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKa5;rport\n"
                           "Max-Forwards: 70\n"
                           "From: <sip:alice@example.test>;tag=a1\n"
                           "To: <sip:bob@example.test>\n"
                           "Call-ID: around-1\n"
                           "CSeq: 1 MESSAGE\n"
                           "Content-Length: 0\n\n"));
  Out fwd(out_.take().bytes);
  // ... bob, who sees that Via stack, answers on his own flow with it on top.
  from_client(kBob, answer(fwd.text(), 200));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_response_not_ours, 1u);
}

TEST_F(Errors, AResponseForAFlowThatIsGoneIsDroppedAndCounted) {
  from_client(kBob, options("sip:carol@example.test", 70));
  Out fwd(out_.take().bytes);
  out_.close_flow(kBob);
  from_core(answer(fwd.text(), 200));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_response_flow_gone, 1u);
}

TEST_F(Errors, ADatagramWithoutContentLengthGetsOneOnTheWayToAStreamCore) {
  from_client(kAlice, crlf("MESSAGE sip:bob@example.test SIP/2.0\n"
                           "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKnocl;rport\n"
                           "Max-Forwards: 70\n"
                           "From: <sip:alice@example.test>;tag=a1\n"
                           "To: <sip:bob@example.test>\n"
                           "Call-ID: nocl-1\n"
                           "CSeq: 1 MESSAGE\n"
                           "Content-Type: text/plain\n\n") +
                          "hello");
  Out fwd(out_.take().bytes);
  EXPECT_EQ(fwd.msg().content_length(), std::optional<std::uint32_t>(5));
  EXPECT_EQ(fwd.msg().body(), "hello");
  sip::Message stream;
  sip::ParseOptions o;
  o.stream = true;
  EXPECT_EQ(sip::parse(fwd.text(), stream, o), sip::Error::ok);
}

TEST_F(Errors, ConfigurationProblemsAreRefusedAtConstruction) {
  ProxyConfig no_client = lab_config();
  no_client.client_side.clear();
  EXPECT_THROW(EdgeProxy(state_, no_client, codec_), std::invalid_argument);
  ProxyConfig no_set = lab_config();
  no_set.key_set.clear();
  EXPECT_THROW(EdgeProxy(state_, no_set, codec_), std::invalid_argument);
  EXPECT_THROW(EdgeProxy(state_, lab_config(), nullptr), std::invalid_argument);
  ProxyConfig bad_host = lab_config();
  bad_host.core_side.host = "not a host";
  EXPECT_THROW(EdgeProxy(state_, bad_host, codec_), std::invalid_argument);
  ProxyConfig twice = lab_config();
  twice.client_side.push_back({Transport::udp, "192.0.2.11", 5060});
  EXPECT_THROW(EdgeProxy(state_, twice, codec_), std::invalid_argument);
  EXPECT_THROW(EdgeProxy(nullptr, lab_config(), codec_), std::invalid_argument);
  ProxyStateOptions no_memory;
  no_memory.max_transactions = 0;
  EXPECT_THROW(ProxyState{no_memory}, std::invalid_argument);
  ProxyStateOptions bad_timers;
  bad_timers.t2 = bad_timers.t1 / 2;
  EXPECT_THROW(ProxyState{bad_timers}, std::invalid_argument);
}

}  // namespace
}  // namespace edge::net::testing
