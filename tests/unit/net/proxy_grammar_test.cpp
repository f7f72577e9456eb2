// Issue 17, messages at the edges of the grammar (RFC 3261 §7, §16.3, §17.1.1.3): a request that
// does not parse still gets its 400 from what reads; Proxy-Require with a tag we do not support is
// 420 with Unsupported; a Request-URI scheme other than sip/sips/tel is 416; the ACK for a final
// response of ours ends at the edge; a Route of ours whose user part is no token is loose routing.
#include "proxy_test_support.h"

namespace edge::net::testing {
namespace {

using sip::HeaderId;

// An INVITE from a client with `headers` between the start line and Content-Length (none of the
// mandatory ones unless given).
std::string request(std::string_view start_line, std::string_view headers, std::string_view body = {}) {
  return crlf(std::string(start_line) + "\n" + std::string(headers) +
              "Content-Length: " + std::to_string(body.size()) + "\n\n") +
         std::string(body);
}

constexpr std::string_view kVia = "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKgram1;rport\n";
constexpr std::string_view kTcpVia = "Via: SIP/2.0/TCP 203.0.113.5:40312;branch=z9hG4bKgram2;rport\n";
constexpr std::string_view kFrom = "From: <sip:alice@example.test>;tag=a1\n";
constexpr std::string_view kTo = "To: <sip:bob@example.test>\n";
constexpr std::string_view kCallId = "Call-ID: gram-1\n";
constexpr std::string_view kMf = "Max-Forwards: 70\n";

// A UDP Via with a branch of its own (the UDP transaction memory would replay one answer to all).
std::string udp_via(int n) {
  return "Via: SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKgram-" + std::to_string(n) + ";rport\n";
}

std::string all_but(std::string_view skip, std::string_view via = kVia, std::string_view method = "INVITE") {
  std::string h;
  const std::string cseq = "CSeq: 7 " + std::string(method) + "\n";
  for (std::string_view line : {via, kMf, kFrom, kTo, kCallId, std::string_view(cseq)})
    if (line.substr(0, line.find(':')) != skip) h += line;
  return h;
}

// A response that may lack mandatory headers (so no strict parse): status and header lines as text.
struct Reply {
  explicit Reply(std::string t) : text(std::move(t)) {}
  int status() const { return text.size() > 11 ? std::stoi(text.substr(8, 3)) : 0; }
  // The value of each line whose name is `name` (no compact forms: the edge copies lines as they came).
  std::vector<std::string> lines(std::string_view name) const {
    std::vector<std::string> v;
    std::size_t pos = text.find("\r\n") + 2;
    while (pos < text.size()) {
      const std::size_t eol = text.find("\r\n", pos);
      const std::string line = text.substr(pos, eol - pos);
      if (line.empty()) break;
      if (line.rfind(std::string(name) + ":", 0) == 0) v.push_back(line.substr(name.size() + 2));
      pos = eol + 2;
    }
    return v;
  }
  std::string text;
};

class Grammar : public ProxyFixture {
 protected:
  Reply reply_to(const FlowKey& f) {
    const FakeNetwork::Sent s = out_.take();
    EXPECT_FALSE(s.to_core) << s.bytes;
    EXPECT_EQ(s.flow, f);
    return Reply(s.bytes);
  }
  // The one message sent, parsed; the test fails when it is not a response to the client.
  Out answer_to(const FlowKey& f) {
    const FakeNetwork::Sent s = out_.take();
    EXPECT_FALSE(s.to_core) << s.bytes;
    EXPECT_EQ(s.flow, f);
    return Out(s.bytes);
  }
};

// ---- 400 from whatever reads ----------------------------------------------------------------

TEST_F(Grammar, EachMissingMandatoryHeaderStillGets400WithWhatThereIs) {
  for (std::string_view missing : {"From", "To", "Call-ID", "CSeq"}) {
    SCOPED_TRACE(std::string(missing));
    from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0", all_but(missing)));
    Reply r = reply_to(kAlice);
    EXPECT_EQ(r.status(), 400) << r.text;
    ASSERT_EQ(r.lines("Via").size(), 1u) << r.text;
    // RFC 3581 still filled in.
    EXPECT_EQ(r.lines("Via")[0],
              "SIP/2.0/UDP 10.1.1.7:5062;branch=z9hG4bKgram1;rport=5062;received=198.51.100.7");
    for (std::string_view h : {"From", "To", "Call-ID", "CSeq"})
      EXPECT_EQ(r.lines(h).size(), h == missing ? 0u : 1u) << h << "\n" << r.text;
    if (missing != "To") {
      EXPECT_NE(r.lines("To")[0].find(";tag="), std::string::npos) << r.text;  // §8.2.6.2
    }
  }
  EXPECT_EQ(proxy_->stats().r400, 4u);
  EXPECT_EQ(proxy_->stats().drop_unparseable, 0u);
}

TEST_F(Grammar, SeveralValuesOfASingleValuedHeaderGet400CopyingTheFirst) {
  struct Case {
    const char* what;
    std::string extra;
  };
  const Case cases[] = {
      {"Call-ID", "Call-ID: gram-2\n"},         {"From", "From: <sip:mallory@example.test>;tag=m1\n"},
      {"To", "To: <sip:carol@example.test>\n"}, {"CSeq", "CSeq: 8 INVITE\n"},
      {"Max-Forwards", "Max-Forwards: 69\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // The second copy right behind the first, before CSeq: a parse that stops there loses CSeq.
    std::string h;
    for (std::string_view line : {kVia, kMf, kFrom, kTo, kCallId}) {
      h += line;
      if (line.substr(0, line.find(':')) == c.what) h += c.extra;
    }
    h += "CSeq: 7 INVITE\n";
    if (std::string_view(c.what) == "CSeq") h += c.extra;
    from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0", h));
    Out r = answer_to(kAlice);
    EXPECT_EQ(r.status(), 400);
    EXPECT_EQ(r.msg().count(HeaderId::call_id), 1u);
    EXPECT_EQ(r.msg().call_id(), "gram-1");
    EXPECT_EQ(r.msg().cseq().number, 7u);
    EXPECT_EQ(r.msg().count(HeaderId::from), 1u);
    EXPECT_EQ(sip::from_tag(r.msg()), "a1");
    EXPECT_EQ(r.msg().count(HeaderId::to), 1u);
    EXPECT_NE(r.header("To").find("bob@"), std::string::npos);
  }
}

TEST_F(Grammar, ABrokenStartLineWithoutCSeqOnAStreamIsStill400) {
  // Three spaces between the elements (RFC 4475 lwsstart) and no CSeq to borrow a method from.
  from_client(kBob, request("INVITE   sip:bob@example.test   SIP/2.0", all_but("CSeq", kTcpVia)));
  Reply r = reply_to(kBob);
  EXPECT_EQ(r.status(), 400);
  EXPECT_EQ(r.lines("Call-ID"), std::vector<std::string>{"gram-1"});
}

// RFC 4475 trws: SP after the SIP-Version is a malformed Request-Line (400), not another version (505).
TEST_F(Grammar, TrailingSpaceAfterTheVersionIs400Not505) {
  from_client(kBob, request("OPTIONS sip:bob@example.test SIP/2.0  ", all_but("", kTcpVia, "OPTIONS")));
  EXPECT_EQ(reply_to(kBob).status(), 400);
  from_client(kBob, request("OPTIONS sip:bob@example.test SIP/7.0", all_but("", kTcpVia, "OPTIONS")));
  EXPECT_EQ(reply_to(kBob).status(), 505);
}

TEST_F(Grammar, WithoutAnyViaAStreamGets400AndADatagramIsDropped) {
  from_client(kBob, request("OPTIONS sip:bob@example.test SIP/2.0", all_but("Via", kTcpVia, "OPTIONS")));
  EXPECT_EQ(reply_to(kBob).status(), 400);
  from_client(kAlice, request("OPTIONS sip:bob@example.test SIP/2.0", all_but("Via", kVia, "OPTIONS")));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().drop_unparseable, 1u);
}

TEST_F(Grammar, BadHeaderLinesAreSkippedNotFatalToThe400) {
  // A line without a colon and a line with a control character, between the headers the answer needs.
  std::string h = std::string(kVia) + "this line has no colon\n" + std::string(kMf) + std::string(kFrom) +
                  "X-Ctl: a\x01z\n" + std::string(kTo) + std::string(kCallId) + "CSeq: 7 INVITE\n";
  from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0", h));
  Out r = answer_to(kAlice);
  EXPECT_EQ(r.status(), 400);
  EXPECT_EQ(r.msg().cseq().number, 7u);
  EXPECT_EQ(r.text().find("X-Ctl"), std::string::npos);
}

TEST_F(Grammar, AnUnparseableAckOrResponseIsNeverAnswered) {
  from_client(kBob, request("ACK sip:bob@example.test SIP/2.0", all_but("Call-ID", kTcpVia, "ACK")));
  from_client(kBob, crlf("SIP/2.0 200 OK\n" + all_but("Call-ID", kTcpVia) + "Content-Length: 0\n\n"));
  EXPECT_TRUE(out_.sent.empty());
}

// ---- 420 --------------------------------------------------------------------------------------

TEST_F(Grammar, ProxyRequireWithAnUnsupportedTagIs420ListingOnlyThose) {
  from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0",
                              all_but("") + "Proxy-Require: outbound, foo\nProxy-Require: Path, bar\n"));
  Out r = answer_to(kAlice);
  EXPECT_EQ(r.status(), 420);
  EXPECT_EQ(r.header("Unsupported"), "foo, bar");
  EXPECT_FALSE(sip::to_tag(r.msg()).empty());
  EXPECT_EQ(proxy_->stats().r420, 1u);

  // From the core too (§16.3 applies to every request the edge proxies).
  from_core(request("OPTIONS sip:alice@192.0.2.10 SIP/2.0",
                    "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKcore420\n" +
                        all_but("Via", kVia, "OPTIONS") + "Proxy-Require: sec-agree\n"));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_TRUE(s.to_core);
  Out rc(s.bytes);
  EXPECT_EQ(rc.status(), 420);
  EXPECT_EQ(rc.header("Unsupported"), "sec-agree");
}

TEST_F(Grammar, ProxyRequireOfTagsWeSupportIsForwarded) {
  from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0",
                              all_but("") + "Proxy-Require: outbound\nProxy-Require: path\n"));
  const FakeNetwork::Sent s = out_.take();
  EXPECT_TRUE(s.to_core) << s.bytes;
}

TEST_F(Grammar, ProxyRequireOnCancelIsNotChecked) {
  from_client(kAlice, request("CANCEL sip:bob@example.test SIP/2.0",
                              all_but("", kVia, "CANCEL") + "Proxy-Require: foo\n"));
  EXPECT_TRUE(out_.take().to_core);
}

// ---- 416 --------------------------------------------------------------------------------------

TEST_F(Grammar, ARequestUriSchemeOtherThanSipSipsTelIs416) {
  int n = 0;
  for (const char* ruri : {"mailto:bob@example.test", "http://example.test/", "soap.beep://192.0.2.1:3002"}) {
    SCOPED_TRACE(ruri);
    from_client(kAlice,
                request(std::string("OPTIONS ") + ruri + " SIP/2.0", all_but("", udp_via(++n), "OPTIONS")));
    EXPECT_EQ(answer_to(kAlice).status(), 416);
  }
  for (const char* ruri : {"sip:bob@example.test", "SIPS:bob@example.test", "tel:+15555550100"}) {
    SCOPED_TRACE(ruri);
    from_client(kAlice,
                request(std::string("OPTIONS ") + ruri + " SIP/2.0", all_but("", udp_via(++n), "OPTIONS")));
    const FakeNetwork::Sent s = out_.take();
    EXPECT_TRUE(s.to_core) << s.bytes;
  }
  // An ACK is never answered: dropped.
  from_client(kAlice, request("ACK mailto:bob@example.test SIP/2.0",
                              all_but("To", kVia, "ACK") + "To: <sip:bob@example.test>;tag=x\n"));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().r416, 3u);
}

// RFC 3261 §19.1.1: no headers in a Request-URI (RFC 4475 escruri): a proxy must not forward them.
TEST_F(Grammar, HeadersInTheRequestUriAre400) {
  from_client(kAlice,
              request("INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0", all_but("")));
  EXPECT_EQ(answer_to(kAlice).status(), 400);
}

// ---- ACK for our own answers --------------------------------------------------------------------

// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's Via and Route, the
// response's To tag.
std::string ack_for(const Out& response, std::string_view via = kVia) {
  return request("ACK sip:bob@example.test SIP/2.0", std::string(via) + std::string(kMf) +
                                                         std::string(kFrom) + "To: " + response.header("To") +
                                                         "\n" + std::string(kCallId) + "CSeq: 7 ACK\n");
}

TEST_F(Grammar, TheAckForOur503IsAbsorbedWhenTheCoreIsBack) {
  out_.core_up = false;
  from_client(kBob, request("INVITE sip:bob@example.test SIP/2.0", all_but("", kTcpVia)));
  Out r = answer_to(kBob);
  ASSERT_EQ(r.status(), 503);
  out_.core_up = true;
  from_client(kBob, ack_for(r, kTcpVia));
  EXPECT_TRUE(out_.sent.empty()) << "the ACK for our 503 went on: " << out_.sent.front().bytes;
  EXPECT_EQ(proxy_->stats().acks_absorbed, 1u);
}

TEST_F(Grammar, TheAckForOur420And400IsAbsorbed) {
  from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0", all_but("") + "Proxy-Require: foo\n"));
  Out r420 = answer_to(kAlice);
  ASSERT_EQ(r420.status(), 420);
  from_client(kAlice, ack_for(r420));
  EXPECT_TRUE(out_.sent.empty());
  // A 400 from what reads carries a tag of ours too.
  from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0", all_but("") + "Call-ID: twice\n"));
  Out r400 = answer_to(kAlice);
  ASSERT_EQ(r400.status(), 400);
  from_client(kAlice, ack_for(r400));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().acks_absorbed, 2u);
}

TEST_F(Grammar, TheAckForOur430IsAbsorbedNotRoutedByItsToken) {
  // The core's INVITE for a flow that closed: 430 to the core (RFC 5626 §5.3), then its ACK.
  const std::string token = token_of(kBob);
  out_.close_flow(kBob);
  const std::string via = "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKcore430\n";
  const std::string route = "Route: <sip:" + token + "@10.0.0.1:5060;transport=tcp;lr>\n";
  from_core(request("INVITE sip:bob@203.0.113.5:40312 SIP/2.0", route + all_but("", via)));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core);
  Out r(s.bytes);
  ASSERT_EQ(r.status(), 430);
  from_core(request("ACK sip:bob@203.0.113.5:40312 SIP/2.0",
                    route + via + std::string(kMf) + std::string(kFrom) + "To: " + r.header("To") + "\n" +
                        std::string(kCallId) + "CSeq: 7 ACK\n"));
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().acks_absorbed, 1u);
  EXPECT_EQ(proxy_->stats().drop_ack, 0u);
}

TEST_F(Grammar, AnAckWithSomeoneElsesTagIsForwarded) {
  for (const char* tag : {"uas-tag-1", "0123456789abcdef", "0123456789ABCDEF"}) {
    from_client(kAlice, request("ACK sip:bob@example.test SIP/2.0",
                                all_but("To", kVia, "ACK") + "To: <sip:bob@example.test>;tag=" + tag + "\n"));
    EXPECT_TRUE(out_.take().to_core) << tag;
  }
  EXPECT_EQ(proxy_->stats().acks_absorbed, 0u);
}

TEST(OwnTag, RecognisesExactlyTheTagsHandedOut) {
  for (std::uint64_t seed : {0ULL, 1ULL, 0x9e3779b97f4a7c15ULL}) {
    for (std::uint64_t c : {0ULL, 1ULL, 41ULL, 1ULL << 40}) {
      const sip::Tag t = sip::make_tag(seed, c);
      EXPECT_TRUE(sip::is_own_tag(seed, t.view(), c + 1));
      EXPECT_FALSE(sip::is_own_tag(seed, t.view(), c));                         // not handed out yet
      EXPECT_FALSE(sip::is_own_tag(seed + 1, t.view(), c + 1 + (1ULL << 41)));  // another process
    }
  }
  EXPECT_FALSE(sip::is_own_tag(0, "abc", 100));
  EXPECT_FALSE(sip::is_own_tag(0, "", 100));
}

// ---- a user part of ours that is no token ----------------------------------------------------

// An outbound proxy configured as sip:alice@edge;lr: "alice" is not token-shaped (docs/token-format.md,
// "Token-shaped user parts"), so the Route is ours without a token: popped, and the request goes on
// to the core (RFC 3261 §16.4 loose routing). Both sides of the line: tests/unit/net/proxy_routing_test.cpp.
TEST_F(Grammar, ARouteOfOursWithAUserPartThatIsNoTokenIsLooseRouting) {
  from_client(kAlice, request("INVITE sip:bob@example.test SIP/2.0",
                              "Route: <sip:alice@192.0.2.10:5060;lr>\n" + all_but("")));
  const FakeNetwork::Sent s = out_.take();
  ASSERT_TRUE(s.to_core) << s.bytes;
  Out fwd(s.bytes);
  EXPECT_TRUE(fwd.values(HeaderId::route).empty());
  EXPECT_EQ(fwd.msg().request_uri(), "sip:bob@example.test");
}

}  // namespace
}  // namespace edge::net::testing
