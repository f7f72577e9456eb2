// The harness's own pieces that need no peer: SIP parser/editor, stream framer, STUN codec, trace and template parsing.
#include <gtest/gtest.h>

#include "edge/test/sip/baresip.h"
#include "edge/test/sip/kamailio.h"
#include "edge/test/sip/message.h"
#include "edge/test/sip/stun.h"

namespace edge::test {
namespace {

constexpr std::string_view kRegister200 =
    "SIP/2.0 200 OK\r\n"
    "v: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKedge;rport=5060;received=127.0.0.1\r\n"
    "Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bKua;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"
    "f: <sip:alice@127.0.0.1>;tag=abc\r\n"
    "To: \"Alice, A.\" <sip:alice@127.0.0.1>;tag=def\r\n"
    "i: call-1@test\r\n"
    "CSeq: 7 REGISTER\r\n"
    "m: <sip:alice@127.0.0.1:40000;transport=tcp;ob>;expires=60;+sip.instance=\"<urn:uuid:1,2>\";reg-id=1\r\n"
    "Path: <sip:tok%2Fen@127.0.0.1:5060;lr;ob>\r\n"
    "k: outbound\r\n"
    "Require: outbound,  path\r\n"
    "Server: core-kamailio\r\n"
    "l: 4\r\n"
    "\r\n"
    "bodyEXTRA";

TEST(SipMessageTest, ParsesCompactFormsListsAndParameters) {
  auto m = SipMessage::parse(kRegister200);
  EXPECT_TRUE(m.is_response());
  EXPECT_EQ(m.status(), 200);
  EXPECT_EQ(m.reason(), "OK");
  EXPECT_EQ(m.cseq_number(), 7u);
  EXPECT_EQ(m.cseq_method(), "REGISTER");
  EXPECT_EQ(m.call_id(), "call-1@test");
  EXPECT_EQ(m.from_tag(), "abc");
  EXPECT_EQ(m.to_tag(), "def");
  // "v" and "Via" are one header; a comma list counts element by element.
  auto vias = m.header_values("VIA");
  ASSERT_EQ(vias.size(), 3u);
  EXPECT_EQ(header_param(vias[0], "received"), "127.0.0.1");
  EXPECT_EQ(header_param(vias[1], "rport"), "");  // a flag parameter
  EXPECT_FALSE(header_param(vias[1], "received"));
  EXPECT_EQ(m.top_via(), vias[0]);
  // Commas inside quotes or <> do not split.
  EXPECT_EQ(m.header_values("To").size(), 1u);
  auto contact = m.header("Contact").value();
  EXPECT_EQ(uri_of(contact), "sip:alice@127.0.0.1:40000;transport=tcp;ob");
  EXPECT_EQ(header_param(contact, "+sip.instance"), "\"<urn:uuid:1,2>\"");
  EXPECT_EQ(header_param(contact, "reg-id"), "1");
  EXPECT_EQ(uri_param(uri_of(contact), "ob"), "");
  EXPECT_EQ(uri_param(uri_of(contact), "transport"), "tcp");
  EXPECT_FALSE(uri_param(uri_of(contact), "lr"));
  auto path = uri_of(m.header("path").value());
  EXPECT_EQ(uri_user(path), "tok%2Fen");
  EXPECT_EQ(uri_host_port(path), "127.0.0.1:5060");
  EXPECT_TRUE(m.has_token("Supported", "OUTBOUND"));
  EXPECT_TRUE(m.has_token("Require", "path"));
  EXPECT_FALSE(m.has_token("Require", "gruu"));
  // Bytes past Content-Length (a datagram's trailing junk) are not body.
  EXPECT_EQ(m.body(), "body");
}

TEST(SipMessageTest, ParsesRequestsAndRejectsGarbage) {
  auto r = SipMessage::parse("INVITE sip:bob@[::1]:5080;transport=tcp SIP/2.0\r\nCall-ID: x\r\n\r\n");
  EXPECT_TRUE(r.is_request());
  EXPECT_EQ(r.method(), "INVITE");
  EXPECT_EQ(uri_host_port(r.request_uri()), "[::1]:5080");
  EXPECT_EQ(uri_user(r.request_uri()), "bob");
  EXPECT_THROW(SipMessage::parse("HELLO\r\n\r\n"), ParseError);
  EXPECT_THROW(SipMessage::parse("SIP/2.0 2000 OK\r\n\r\n"), ParseError);
  EXPECT_THROW(SipMessage::parse("OPTIONS sip:a SIP/2.0\r\nno colon here\r\n\r\n"), ParseError);
  EXPECT_THROW(r.cseq_number(), ParseError);
}

TEST(SipMessageTest, EditsAndSerializesWithAComputedContentLength) {
  auto m = SipMessage::request("BYE", "sip:a@127.0.0.1");
  m.add_header("Route", "<sip:p1;lr>, <sip:p2;lr>")
      .add_header("Route", "<sip:p3;lr>")
      .add_header("Content-Length", "99");
  m.remove_first_value("Route");
  EXPECT_EQ(m.header_values("Route"), (std::vector<std::string>{"<sip:p2;lr>", "<sip:p3;lr>"}));
  m.prepend_header("Route", "<sip:p0;lr>");
  EXPECT_EQ(m.header_values("Route").front(), "<sip:p0;lr>");
  m.set_header("Route", "<sip:only;lr>");
  EXPECT_EQ(m.header_values("Route"), (std::vector<std::string>{"<sip:only;lr>"}));
  m.set_body("hello", "text/plain");
  auto text = m.to_string();
  EXPECT_EQ(text,
            "BYE sip:a@127.0.0.1 SIP/2.0\r\nRoute: <sip:only;lr>\r\nContent-Type: text/plain\r\n"
            "Content-Length: 5\r\n\r\nhello");
  auto back = SipMessage::parse(text);
  EXPECT_EQ(back.body(), "hello");
  EXPECT_EQ(back.raw(), text);
  m.remove_header("route");
  EXPECT_FALSE(m.has_header("Route"));
}

TEST(StreamFramerTest, CutsByContentLengthAndCountsKeepAlives) {
  StreamFramer f;
  std::string a = "OPTIONS sip:x SIP/2.0\r\nl: 3\r\n\r\nabc";
  std::string b = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
  std::string stream = "\r\n" + a + "\r\n\r\n" + b;
  // Byte by byte: framing must not depend on how reads split the stream.
  std::vector<std::string> got;
  for (char c : stream) {
    f.feed(std::string_view(&c, 1));
    while (auto m = f.next()) got.push_back(*m);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], a);
  EXPECT_EQ(got[1], b);
  EXPECT_EQ(f.buffered(), 0u);
  // Fed one byte at a time, a ping's two CRLFs cannot be told from two pongs.
  EXPECT_EQ(f.pongs() + 2 * f.pings(), 3u);

  StreamFramer whole;
  whole.feed(stream);
  while (whole.next()) {
  }
  EXPECT_EQ(whole.pongs(), 1u);
  EXPECT_EQ(whole.pings(), 1u);
}

TEST(StunTest, DecodesXorMappedAddressV4AndV6) {
  StunTransactionId id{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  auto req = make_stun_binding_request(id);
  ASSERT_EQ(req.size(), 20u);
  EXPECT_TRUE(looks_like_stun(req));
  EXPECT_FALSE(looks_like_stun(std::vector<std::uint8_t>{'R', 'E'}));

  // 127.0.0.1:40000 XOR-mapped: port ^ 0x2112, address ^ 0x2112A442.
  std::vector<std::uint8_t> v4 = {0x01, 0x01, 0x00, 0x0C, 0x21, 0x12, 0xA4, 0x42};
  v4.insert(v4.end(), id.begin(), id.end());
  std::uint16_t xport = 40000 ^ 0x2112;
  v4.insert(v4.end(), {0x00, 0x20, 0x00, 0x08, 0x00, 0x01, static_cast<std::uint8_t>(xport >> 8),
                       static_cast<std::uint8_t>(xport & 0xFF), 127 ^ 0x21, 0 ^ 0x12, 0 ^ 0xA4, 1 ^ 0x42});
  auto r = parse_stun_response(v4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message_type, 0x0101);
  EXPECT_TRUE(r->magic_cookie_ok);
  EXPECT_EQ(r->transaction_id, id);
  ASSERT_TRUE(r->mapped);
  EXPECT_TRUE(r->mapped_was_xor);
  EXPECT_EQ(*r->mapped, loopback(40000));

  // ::1:5060 XOR-mapped: the last bytes are XORed with the transaction id.
  std::vector<std::uint8_t> v6 = {0x01, 0x01, 0x00, 0x18, 0x21, 0x12, 0xA4, 0x42};
  v6.insert(v6.end(), id.begin(), id.end());
  std::uint16_t xport6 = 5060 ^ 0x2112;
  v6.insert(v6.end(), {0x00, 0x20, 0x00, 0x14, 0x00, 0x02, static_cast<std::uint8_t>(xport6 >> 8),
                       static_cast<std::uint8_t>(xport6 & 0xFF), 0x21, 0x12, 0xA4, 0x42});
  for (std::size_t i = 0; i < 12; ++i) v6.push_back(static_cast<std::uint8_t>((i == 11 ? 1 : 0) ^ id[i]));
  auto r6 = parse_stun_response(v6);
  ASSERT_TRUE(r6 && r6->mapped);
  EXPECT_EQ(*r6->mapped, loopback(5060, true));

  v4[3] = 0x40;  // a length past the datagram
  EXPECT_FALSE(parse_stun_response(v4));
}

TEST(BaresipTraceTest, ParsesTracedMessagesAndSkipsIncompleteOnes) {
  std::string out =
      "baresip is ready.\n"
      "\x1b[36;1m#\nTCP 127.0.0.1:46330 -> 127.0.0.1:5080\n"
      "REGISTER sip:127.0.0.1;transport=tcp SIP/2.0\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n\x1b[;m\n"
      "alice@127.0.0.1: {1/TCP/v4} 200 OK (core-kamailio) [1 binding]\n"
      "\x1b[36;1m#\nUDP [::1]:5080 -> [::1]:4000\n"
      "SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n\x1b[;m\n"
      "\x1b[36;1m#\nTCP 127.0.0.1:5080 -> 127.0.0.1:46330\nINVITE sip:a SIP/2.0\r\n";  // still being written
  auto t = parse_baresip_trace(out);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].transport, "TCP");
  EXPECT_EQ(t[0].source, loopback(46330));
  EXPECT_EQ(t[0].destination, loopback(5080));
  EXPECT_EQ(t[0].message.method(), "REGISTER");
  EXPECT_EQ(t[1].source, loopback(5080, true));
  EXPECT_EQ(t[1].message.status(), 200);
}

TEST(TemplateTest, FillsPlaceholdersAndRefusesLeftovers) {
  EXPECT_EQ(render_template("a=@A@ b=@B@ @A@", {{"A", "1"}, {"B", "@"}}), "a=1 b=@ 1");
  EXPECT_THROW(render_template("x=@MISSING@", {{"A", "1"}}), std::runtime_error);
}

}  // namespace
}  // namespace edge::test
