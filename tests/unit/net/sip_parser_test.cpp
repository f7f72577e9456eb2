// Parser and stream framer: the corpus parses, and every strict rule has a negative test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "edge/net/sip/message.h"
#include "edge/net/sip/utf8.h"

namespace sip = edge::sip;
using sip::Error;
using sip::HeaderId;

namespace {

std::string load(const std::string& name) {
  std::ifstream in(std::string(EDGE_TEST_CORPUS_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Builds a message from LF-separated lines (CRLF on the wire) and a body.
std::string msg(std::string_view head, std::string_view body = {}) {
  std::string out;
  for (char c : head) {
    if (c == '\n')
      out += "\r\n";
    else
      out += c;
  }
  out += "\r\n";
  out += body;
  return out;
}

constexpr std::string_view kRegister =
    "REGISTER sip:example.test SIP/2.0\n"
    "Via: SIP/2.0/TCP 127.0.0.1:41234;branch=z9hG4bK3f1c;rport\n"
    "Max-Forwards: 70\n"
    "To: <sip:alice@example.test>\n"
    "From: <sip:alice@example.test>;tag=c6a5\n"
    "Call-ID: 8a1c3e5f\n"
    "CSeq: 38122 REGISTER\n"
    "Contact: <sip:alice@127.0.0.1:41234;transport=tcp;ob>;reg-id=1\n"
    "Content-Length: 0\n";

Error parse(const std::string& s, sip::Message& m, bool stream = false, sip::Limits lim = {}) {
  sip::ParseOptions o;
  o.stream = stream;
  o.limits = lim;
  return sip::parse(s, m, o);
}

// Replaces the first occurrence of `from` in the register template.
std::string register_with(std::string_view from, std::string_view to) {
  std::string s(kRegister);
  auto p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  s.replace(p, from.size(), to);
  return msg(s);
}

}  // namespace

TEST(SipParser, ParsesRequestLineAndHeaders) {
  sip::Message m;
  const std::string s = msg(kRegister);
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_TRUE(m.is_request());
  EXPECT_EQ(m.method(), sip::Method::register_);
  EXPECT_EQ(m.method_name(), "REGISTER");
  EXPECT_EQ(m.request_uri(), "sip:example.test");
  EXPECT_EQ(m.headers().size(), 8u);
  EXPECT_EQ(m.call_id(), "8a1c3e5f");
  EXPECT_EQ(m.cseq().number, 38122u);
  EXPECT_EQ(m.cseq().method, "REGISTER");
  EXPECT_EQ(m.max_forwards(), 70u);
  EXPECT_EQ(m.content_length(), 0u);
  EXPECT_TRUE(m.body().empty());
  EXPECT_EQ(m.raw().size(), s.size());
  const sip::Header* via = m.first(HeaderId::via);
  ASSERT_NE(via, nullptr);
  EXPECT_EQ(via->value, "SIP/2.0/TCP 127.0.0.1:41234;branch=z9hG4bK3f1c;rport");
  EXPECT_EQ(std::string_view(s).substr(via->line_begin, via->line_end - via->line_begin),
            "Via: SIP/2.0/TCP 127.0.0.1:41234;branch=z9hG4bK3f1c;rport\r\n");
  // Views point into the caller's buffer: nothing was copied.
  EXPECT_EQ(via->value.data(), s.data() + s.find("SIP/2.0/TCP"));
  EXPECT_EQ(m.first(HeaderId::flow_timer), nullptr);
  EXPECT_EQ(m.first(HeaderId::count_), nullptr);
  EXPECT_EQ(m.count(HeaderId::via), 1u);
}

TEST(SipParser, ParsesStatusLine) {
  sip::Message m;
  const std::string s = load("response_200_register.sip");
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_FALSE(m.is_request());
  EXPECT_EQ(m.status(), 200);
  EXPECT_EQ(m.reason_phrase(), "OK");
  EXPECT_EQ(m.count(HeaderId::via), 2u);
}

TEST(SipParser, HeaderNamesAreCaseInsensitiveAndCompactFormsKnown) {
  EXPECT_EQ(sip::header_id("via"), HeaderId::via);
  EXPECT_EQ(sip::header_id("VIA"), HeaderId::via);
  EXPECT_EQ(sip::header_id("v"), HeaderId::via);
  EXPECT_EQ(sip::header_id("V"), HeaderId::via);
  EXPECT_EQ(sip::header_id("call-ID"), HeaderId::call_id);
  EXPECT_EQ(sip::header_id("i"), HeaderId::call_id);
  EXPECT_EQ(sip::header_id("m"), HeaderId::contact);
  EXPECT_EQ(sip::header_id("l"), HeaderId::content_length);
  EXPECT_EQ(sip::header_id("k"), HeaderId::supported);
  EXPECT_EQ(sip::header_id("f"), HeaderId::from);
  EXPECT_EQ(sip::header_id("t"), HeaderId::to);
  EXPECT_EQ(sip::header_id("c"), HeaderId::content_type);
  EXPECT_EQ(sip::header_id("e"), HeaderId::content_encoding);
  EXPECT_EQ(sip::header_id("s"), HeaderId::subject);
  EXPECT_EQ(sip::header_id("o"), HeaderId::event);
  EXPECT_EQ(sip::header_id("r"), HeaderId::refer_to);
  EXPECT_EQ(sip::header_id("u"), HeaderId::allow_events);
  EXPECT_EQ(sip::header_id("b"), HeaderId::referred_by);
  EXPECT_EQ(sip::header_id("x"), HeaderId::session_expires);
  EXPECT_EQ(sip::header_id("y"), HeaderId::identity);
  EXPECT_EQ(sip::header_id("j"), HeaderId::reject_contact);
  EXPECT_EQ(sip::header_id("a"), HeaderId::accept_contact);
  EXPECT_EQ(sip::header_id("d"), HeaderId::request_disposition);
  EXPECT_EQ(sip::header_id("FLOW-TIMER"), HeaderId::flow_timer);
  EXPECT_EQ(sip::header_id("Record-route"), HeaderId::record_route);
  EXPECT_EQ(sip::header_id("X-Custom"), HeaderId::other);
  EXPECT_EQ(sip::header_id("q"), HeaderId::other);

  sip::Message m;
  const std::string s = load("compact_forms.sip");
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_EQ(m.call_id(), "compact-0001@192.0.2.30");
  ASSERT_TRUE(m.content_length());
  EXPECT_EQ(m.body().size(), *m.content_length());
  EXPECT_EQ(m.first(HeaderId::contact)->name, "m");
  EXPECT_EQ(m.first(HeaderId::subject)->value, "compact header forms");
}

TEST(SipParser, FoldedHeadersKeepTheirBytesAndTrim) {
  sip::Message m;
  const std::string s = load("folded_headers.sip");
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_EQ(m.count(HeaderId::via), 2u);
  const sip::Header* subject = m.first(HeaderId::subject);
  ASSERT_NE(subject, nullptr);
  EXPECT_EQ(subject->value, "a subject that is\r\n\tfolded over\r\n  three lines");
  EXPECT_EQ(m.headers()[m.headers().size() - 2].value, "application/sdp");
}

TEST(SipParser, EveryCorpusMessageParses) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(EDGE_TEST_CORPUS_DIR)) {
    if (e.path().extension() != ".sip") continue;
    const std::string s = load(e.path().filename().string());
    const bool datagram_only = e.path().filename().string().find("no_content_length") != std::string::npos;
    sip::Message m;
    EXPECT_EQ(parse(s, m, !datagram_only), Error::ok) << e.path();
    EXPECT_EQ(m.raw().size(), s.size()) << e.path();
    if (!datagram_only) {
      sip::Frame f = sip::frame_stream(s);
      EXPECT_EQ(f.status, sip::FrameStatus::message) << e.path();
      EXPECT_EQ(f.size, s.size()) << e.path();
    }
    ++n;
  }
  EXPECT_GE(n, 12u);
}

TEST(SipParser, BodyFramedByContentLength) {
  sip::Message m;
  const std::string s = load("invite_sdp_udp.sip");
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_EQ(m.body().substr(0, 5), "v=0\r\n");
  EXPECT_EQ(m.body().size(), *m.content_length());
  EXPECT_EQ(m.body().data() + m.body().size(), s.data() + s.size());

  // A datagram carries extra bytes after the body: they are not part of the message (§18.3).
  std::string padded = s + "garbage";
  ASSERT_EQ(parse(padded, m), Error::ok);
  EXPECT_EQ(m.raw().size(), s.size());
  // A datagram shorter than Content-Length is an error.
  std::string shortened = s.substr(0, s.size() - 3);
  EXPECT_EQ(parse(shortened, m), Error::body_truncated);
}

TEST(SipParser, DatagramWithoutContentLengthRunsToTheEnd) {
  sip::Message m;
  const std::string s = load("response_no_content_length_udp.sip");
  ASSERT_EQ(parse(s, m), Error::ok);
  EXPECT_FALSE(m.content_length());
  EXPECT_TRUE(m.body().empty());
  const std::string with_body = s + "hello";  // the message views its buffer: keep it alive
  EXPECT_EQ(parse(with_body, m), Error::ok);
  EXPECT_EQ(m.body(), "hello");
  // ... but on a stream it is an error.
  EXPECT_EQ(parse(s, m, true), Error::missing_content_length);
}

TEST(SipParser, SkipsLeadingCrlf) {
  sip::Message m;
  const std::string s = "\r\n\r\n" + msg(kRegister);
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_EQ(m.raw().substr(0, 8), "REGISTER");
}

TEST(SipParser, ManyHeadersOverflowInlineSlots) {
  std::string head(kRegister);
  for (int i = 0; i < 100; ++i) head += "X-Filler-" + std::to_string(i) + ": " + std::to_string(i) + "\n";
  sip::Message m;
  const std::string s = msg(head);
  ASSERT_EQ(parse(s, m, true), Error::ok);
  EXPECT_EQ(m.headers().size(), 108u);
  EXPECT_EQ(m.headers().back().value, "99");
  EXPECT_EQ(m.first(HeaderId::via)->value.substr(0, 11), "SIP/2.0/TCP");
  // A reused Message goes back to the inline slots.
  const std::string reg = msg(kRegister);  // the message views its buffer: keep it alive
  ASSERT_EQ(parse(reg, m, true), Error::ok);
  EXPECT_EQ(m.headers().size(), 8u);
  sip::Message copy = m;
  EXPECT_EQ(copy.headers().size(), 8u);
  EXPECT_EQ(copy.first(HeaderId::cseq)->value, "38122 REGISTER");
}

// --- strict rules ---------------------------------------------------------------------------

TEST(SipParserStrict, MalformedStartLines) {
  sip::Message m;
  auto with_start = [](std::string_view line) {
    std::string s(kRegister);
    s.replace(0, s.find('\n'), line);
    return msg(s);
  };
  EXPECT_EQ(parse(with_start("REGISTER sip:example.test"), m), Error::bad_start_line);
  EXPECT_EQ(parse(with_start("REGISTER  sip:example.test SIP/2.0"), m), Error::bad_request_uri);
  EXPECT_EQ(parse(with_start("REGISTER sip:example.test SIP/3.0"), m), Error::bad_version);
  EXPECT_EQ(parse(with_start("REGISTER sip:example.test HTTP/1.1"), m), Error::bad_start_line);
  EXPECT_EQ(parse(with_start("REG(ISTER sip:example.test SIP/2.0"), m), Error::bad_method);
  EXPECT_EQ(parse(with_start("REGISTER example.test SIP/2.0"), m), Error::bad_request_uri);
  EXPECT_EQ(parse(with_start("REGISTER sip:ex\xc3\xa9.test SIP/2.0"), m), Error::bad_request_uri);
  EXPECT_EQ(parse(with_start("SIP/2.0 99 Odd"), m), Error::bad_status_code);
  EXPECT_EQ(parse(with_start("SIP/2.0 2000 OK"), m), Error::bad_status_code);
  EXPECT_EQ(parse(with_start("SIP/2.0 2x0 OK"), m), Error::bad_status_code);
  EXPECT_EQ(parse(with_start("SIP/1.0 200 OK"), m), Error::bad_version);
  EXPECT_EQ(parse(with_start("sip/2.0 200 OK"), m), Error::ok);  // version is case-insensitive
  EXPECT_EQ(parse(with_start("SIP/2.0 200"), m), Error::ok);
  EXPECT_EQ(parse(std::string(""), m), Error::empty_message);
  EXPECT_EQ(parse(std::string("\r\n\r\n"), m), Error::empty_message);
  EXPECT_EQ(parse(std::string("REGISTER sip:a SIP/2.0"), m), Error::bad_start_line);
}

TEST(SipParserStrict, LineEndingsAndControlCharacters) {
  sip::Message m;
  std::string lf_only(kRegister);  // bare LF line endings
  lf_only += "\n";
  EXPECT_EQ(parse(lf_only, m), Error::bad_line_ending);
  EXPECT_EQ(parse(register_with("Call-ID: 8a1c3e5f", "Call-ID: 8a1c\r3e5f"), m), Error::bad_line_ending);
  EXPECT_EQ(parse(register_with("Call-ID: 8a1c3e5f", std::string("Call-ID: 8a1c\0003e5f", 17)), m),
            Error::control_character);
  EXPECT_EQ(
      parse(register_with("To: <sip:alice@example.test>", "To: \"\x1b[31m\" <sip:alice@example.test>"), m),
      Error::control_character);
  EXPECT_EQ(parse(register_with("To: <sip:alice@example.test>", "To: \"\x7f\" <sip:alice@example.test>"), m),
            Error::control_character);
}

// Issue 17: text the edge does not read is passed on as it came, UTF-8 or not (a Latin-1 display
// name or reason phrase from an older phone); only what the edge interprets is checked, by the
// structured parsers (URIs, Via). Whether a message is UTF-8 matters only toward WebSocket peers
// (sip::is_utf8: binary frames for the rest).
TEST(SipParserStrict, OctetsAboveAsciiInTextAreOpaque) {
  sip::Message m;
  auto to = [](std::string_view display) {
    return register_with("To: <sip:alice@example.test>",
                         "To: \"" + std::string(display) + "\" <sip:alice@example.test>");
  };
  for (std::string_view d : {"Zo\xc3\xab", "\xe2\x98\x8e", "\xf0\x9f\x99\x82", "Zo\xeb" /* Latin-1 */, "\xc3",
                             "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80"}) {
    const std::string text = to(d);  // the message views it: it must outlive the checks below
    EXPECT_EQ(parse(text, m), Error::ok) << d;
    ASSERT_NE(m.first(sip::HeaderId::to), nullptr);
    EXPECT_NE(m.first(sip::HeaderId::to)->value.find(d), std::string_view::npos);
  }
  // A reason phrase in Latin-1 ("Occupé").
  const std::string busy =
      "SIP/2.0 486 Occup\xe9\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKx\r\n"
      "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n"
      "Content-Length: 0\r\n\r\n";
  EXPECT_EQ(parse(busy, m), Error::ok);
  EXPECT_EQ(m.reason_phrase(), "Occup\xe9");
  // The body is not text: binary bytes there are fine.
  std::string s = register_with("Content-Length: 0", "Content-Length: 4");
  s += std::string("\x00\xff\x01\x80", 4);
  EXPECT_EQ(parse(s, m, true), Error::ok);
  // Where the edge reads, the grammar still decides: no raw octet in a Request-URI.
  EXPECT_EQ(parse(std::string("OPTIONS sip:z\xc3\xab@example.test SIP/2.0\r\n\r\n"), m),
            Error::bad_request_uri);
}

// A quoted-pair escapes any control but CR and LF (RFC 3261 §25.1; RFC 4475 intmeth).
TEST(SipParserStrict, AnEscapedControlInAQuotedStringIsOpaque) {
  sip::Message m;
  static constexpr char kEscaped[] = "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:alice@example.test>";
  EXPECT_EQ(
      parse(register_with("To: <sip:alice@example.test>", std::string(kEscaped, sizeof kEscaped - 1)), m),
      Error::ok);
  EXPECT_EQ(
      parse(register_with("To: <sip:alice@example.test>", "To: \"BEL:\x07\" <sip:alice@example.test>"), m),
      Error::control_character);
}

TEST(Utf8, WellFormedPerRfc3629) {
  EXPECT_TRUE(sip::is_utf8(""));
  EXPECT_TRUE(sip::is_utf8("plain SIP/2.0"));
  EXPECT_TRUE(sip::is_utf8("Zo\xc3\xab \xe2\x98\x8e \xf0\x9f\x99\x82"));
  for (std::string_view bad :
       {"\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80", "Zo\xeb"})
    EXPECT_FALSE(sip::is_utf8(bad)) << bad;
}

TEST(SipParserStrict, HeaderLineSyntax) {
  sip::Message m;
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Max-Forwards 70"), m), Error::missing_colon);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Max Forwards: 70"), m), Error::missing_colon);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", ": 70"), m), Error::bad_header_name);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Max(Forwards: 70"), m), Error::bad_header_name);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Max-Forwards   :   70"), m), Error::ok);
  std::string s(kRegister);
  s.insert(s.find('\n') + 1, " continuation\n");
  EXPECT_EQ(parse(msg(s), m), Error::bad_folding);
  // Header section never terminated.
  std::string open = msg(kRegister);
  open.resize(open.size() - 2);
  EXPECT_EQ(parse(open, m), Error::headers_incomplete);
}

TEST(SipParserStrict, DuplicateSingleValuedHeaders) {
  sip::Message m;
  for (std::string_view line :
       {"Call-ID: other", "i: other", "CSeq: 1 REGISTER", "From: <sip:x@y>;tag=1", "f: <sip:x@y>;tag=1",
        "To: <sip:x@y>", "Max-Forwards: 10", "Flow-Timer: 30", "Content-Length: 0", "l: 0"}) {
    std::string s(kRegister);
    s += std::string(line) + "\n";
    if (line.starts_with("Flow-Timer")) s += std::string(line) + "\n";  // not in the template
    EXPECT_EQ(parse(msg(s), m), Error::duplicate_header) << line;
  }
  // Multi-valued headers may repeat.
  std::string s(kRegister);
  s += "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\nSupported: path\nSupported: outbound\n";
  EXPECT_EQ(parse(msg(s), m), Error::ok);
}

TEST(SipParserStrict, ContentLengthRules) {
  sip::Message m;
  auto cl = [](std::string_view v) {
    return register_with("Content-Length: 0", "Content-Length: " + std::string(v));
  };
  EXPECT_EQ(parse(cl("-1"), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl("abc"), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl("1 2"), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl("+0"), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl(""), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl("0x10"), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl("99999999999999999999"), m, true), Error::bad_content_length);
  EXPECT_EQ(parse(cl("70000"), m, true), Error::content_length_too_large);
  EXPECT_EQ(parse(cl("0000"), m, true), Error::ok);
  std::string two(kRegister);
  two += "Content-Length: 5\n";
  EXPECT_EQ(parse(msg(two), m, true), Error::conflicting_content_length);
  std::string missing(kRegister);
  missing.erase(missing.find("Content-Length"));
  EXPECT_EQ(parse(msg(missing), m, true), Error::missing_content_length);
  EXPECT_EQ(parse(msg(missing), m, false), Error::ok);
  sip::Limits small;
  small.max_message_size = 400;
  EXPECT_EQ(parse(cl("200"), m, true, small), Error::content_length_too_large);
}

TEST(SipParserStrict, MandatoryHeadersAndCSeq) {
  sip::Message m;
  for (std::string_view h : {"Via:", "To:", "From:", "Call-ID:", "CSeq:"}) {
    std::string s(kRegister);
    auto p = s.find(h);
    s.erase(p, s.find('\n', p) - p + 1);
    EXPECT_EQ(parse(msg(s), m), Error::missing_header) << h;
  }
  EXPECT_EQ(parse(register_with("CSeq: 38122 REGISTER", "CSeq: 38122 INVITE"), m),
            Error::cseq_method_mismatch);
  EXPECT_EQ(parse(register_with("CSeq: 38122 REGISTER", "CSeq: REGISTER"), m), Error::bad_cseq);
  EXPECT_EQ(parse(register_with("CSeq: 38122 REGISTER", "CSeq: 38122"), m), Error::bad_cseq);
  EXPECT_EQ(parse(register_with("CSeq: 38122 REGISTER", "CSeq: 2147483648 REGISTER"), m), Error::bad_cseq);
  EXPECT_EQ(parse(register_with("CSeq: 38122 REGISTER", "CSeq: 12x REGISTER"), m), Error::bad_cseq);
  EXPECT_EQ(parse(register_with("CSeq: 38122 REGISTER", "CSeq:  38122 \n REGISTER"), m), Error::ok);
  EXPECT_EQ(m.cseq().number, 38122u);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Max-Forwards: 256"), m), Error::bad_max_forwards);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Max-Forwards: -1"), m), Error::bad_max_forwards);
  EXPECT_EQ(parse(register_with("Max-Forwards: 70", "Flow-Timer: soon"), m), Error::bad_flow_timer);
  EXPECT_EQ(parse(register_with("Call-ID: 8a1c3e5f", "Call-ID: two words"), m), Error::bad_call_id);
  EXPECT_EQ(parse(register_with("Call-ID: 8a1c3e5f", "Call-ID:"), m), Error::bad_call_id);
}

TEST(SipParserStrict, Limits) {
  sip::Message m;
  sip::Limits lim;
  lim.max_headers = 8;
  EXPECT_EQ(parse(msg(kRegister), m, true, lim), Error::ok);
  lim.max_headers = 7;
  EXPECT_EQ(parse(msg(kRegister), m, true, lim), Error::too_many_headers);

  lim = {};
  lim.max_header_line = 40;
  EXPECT_EQ(parse(msg(kRegister), m, true, lim), Error::header_line_too_long);
  lim.max_header_line = 200;
  // Folding counts towards the line: a long folded header is still one long line.
  std::string folded(kRegister);
  folded += "Subject: " + std::string(100, 'a') + "\n " + std::string(100, 'b') + "\n";
  EXPECT_EQ(parse(msg(folded), m, true, lim), Error::header_line_too_long);

  lim = {};
  lim.max_message_size = 100;
  EXPECT_EQ(parse(msg(kRegister), m, true, lim), Error::message_too_large);
  lim.max_header_line = 10;
  EXPECT_EQ(parse(msg("REGISTER sip:a-very-long-request-uri.example.test SIP/2.0\n"), m, true),
            Error::missing_header);
}

TEST(SipParserStrict, SuggestedStatuses) {
  EXPECT_EQ(sip::suggested_status(Error::bad_version), 505);
  EXPECT_EQ(sip::suggested_status(Error::message_too_large), 513);
  EXPECT_EQ(sip::suggested_status(Error::duplicate_header), 400);
  EXPECT_EQ(sip::suggested_status(Error::ok), 0);
  EXPECT_EQ(sip::reason(Error::duplicate_header), "duplicate single-valued header");
  for (int e = 0; e <= static_cast<int>(Error::not_a_response); ++e)
    EXPECT_NE(sip::reason(static_cast<Error>(e)), "unknown error") << e;
}

// --- stream framing -----------------------------------------------------------------------

TEST(SipFraming, WholeMessageAndPieces) {
  const std::string s = load("invite_sdp_udp.sip");
  sip::Frame f = sip::frame_stream(s);
  EXPECT_EQ(f.status, sip::FrameStatus::message);
  EXPECT_EQ(f.size, s.size());
  // Two messages back to back: the first is delimited exactly.
  f = sip::frame_stream(s + s);
  EXPECT_EQ(f.status, sip::FrameStatus::message);
  EXPECT_EQ(f.size, s.size());
  // Every prefix asks for more; once the headers are in, it knows the total.
  const std::size_t headers = s.find("\r\n\r\n") + 4;
  for (std::size_t n = 1; n < s.size(); ++n) {
    f = sip::frame_stream(std::string_view(s).substr(0, n));
    ASSERT_EQ(f.status, sip::FrameStatus::need_more) << n;
    EXPECT_EQ(f.size, n >= headers ? s.size() : 0u) << n;
  }
}

TEST(SipFraming, ResumeFromKeepsWorkLinear) {
  const std::string s = load("register_baresip_tcp.sip");
  std::size_t scanned = 0;
  sip::Frame f;
  for (std::size_t n = 1; n <= s.size(); ++n) {
    f = sip::frame_stream(std::string_view(s).substr(0, n), {}, scanned);
    if (f.status != sip::FrameStatus::need_more) break;
    scanned = f.scanned;
  }
  EXPECT_EQ(f.status, sip::FrameStatus::message);
  EXPECT_EQ(f.size, s.size());
}

TEST(SipFraming, ResumingInsideABodyFindsTheSameMessage) {
  // A MESSAGE whose body arrives in pieces, the next message right behind it:
  // the resumed search must not take the second message's header end for the
  // first's (that read both header sections as one: a duplicate Content-Length,
  // a framing error, and the connection closed).
  const std::string first =
      "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bK1\r\n"
      "Call-ID: m1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nsipload ping";
  const std::string second =
      "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5080;branch=z9hG4bK2\r\n"
      "Call-ID: m2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
  const std::string stream = first + second;
  const std::size_t body_at = first.size() - 12;
  for (std::size_t cut = body_at; cut < first.size(); ++cut) {
    const sip::Frame part = sip::frame_stream(std::string_view(stream).substr(0, cut));
    ASSERT_EQ(part.status, sip::FrameStatus::need_more) << cut;
    ASSERT_EQ(part.size, first.size()) << cut;
    // The rest of the body and the whole next message arrive together.
    const sip::Frame whole = sip::frame_stream(stream, {}, part.scanned);
    EXPECT_EQ(whole.status, sip::FrameStatus::message) << cut;
    EXPECT_EQ(whole.size, first.size()) << cut;
    // A byte at a time through the body.
    std::size_t scanned = part.scanned;
    sip::Frame f = part;
    for (std::size_t n = cut + 1; n <= first.size() && f.status == sip::FrameStatus::need_more; ++n) {
      f = sip::frame_stream(std::string_view(stream).substr(0, n), {}, scanned);
      scanned = f.scanned;
    }
    EXPECT_EQ(f.status, sip::FrameStatus::message) << cut;
    EXPECT_EQ(f.size, first.size()) << cut;
  }
}

TEST(SipFraming, KeepAlives) {
  EXPECT_EQ(sip::frame_stream("\r\n\r\n").status, sip::FrameStatus::keep_alive);
  EXPECT_EQ(sip::frame_stream("\r\n\r\n").size, 4u);
  EXPECT_EQ(sip::frame_stream("\r\n\r\nREGISTER").status, sip::FrameStatus::keep_alive);
  EXPECT_EQ(sip::frame_stream("\r").status, sip::FrameStatus::need_more);
  EXPECT_EQ(sip::frame_stream("\r\n").status, sip::FrameStatus::need_more);
  EXPECT_EQ(sip::frame_stream("\r\n\r").status, sip::FrameStatus::need_more);
  sip::Frame f = sip::frame_stream("\r\nREGISTER");
  EXPECT_EQ(f.status, sip::FrameStatus::stray_crlf);
  EXPECT_EQ(f.size, 2u);
  EXPECT_EQ(sip::frame_stream("\n\n").status, sip::FrameStatus::error);
  EXPECT_EQ(sip::frame_stream("\r\r").status, sip::FrameStatus::error);
}

TEST(SipFraming, Errors) {
  std::string missing(kRegister);
  missing.erase(missing.find("Content-Length"));
  sip::Frame f = sip::frame_stream(msg(missing));
  EXPECT_EQ(f.status, sip::FrameStatus::error);
  EXPECT_EQ(f.error, Error::missing_content_length);

  f = sip::frame_stream(register_with("Content-Length: 0", "Content-Length: -5"));
  EXPECT_EQ(f.error, Error::bad_content_length);
  f = sip::frame_stream(register_with("Content-Length: 0", "l: ten"));
  EXPECT_EQ(f.error, Error::bad_content_length);
  f = sip::frame_stream(register_with("Content-Length: 0", "Content-Length: 1000000"));
  EXPECT_EQ(f.error, Error::content_length_too_large);
  f = sip::frame_stream(register_with("Content-Length: 0", "Content-Length: 3\nl: 4"));
  EXPECT_EQ(f.error, Error::conflicting_content_length);
  f = sip::frame_stream(register_with("Content-Length: 0", "Content-Length: 0\ncontent-length: 0"));
  EXPECT_EQ(f.error, Error::duplicate_header);
  // A folded Content-Length value is still found.
  f = sip::frame_stream(register_with("Content-Length: 0", "Content-Length:\n  0"));
  EXPECT_EQ(f.status, sip::FrameStatus::message);

  // Headers never ending: an error once the limit is reached, not unbounded buffering.
  sip::Limits lim;
  lim.max_message_size = 1000;
  std::string endless = "REGISTER sip:a SIP/2.0\r\n";
  while (endless.size() < 999) endless += "X-A: b\r\n";
  EXPECT_EQ(sip::frame_stream(endless.substr(0, 999), lim).status, sip::FrameStatus::need_more);
  f = sip::frame_stream(endless.substr(0, 1000), lim);
  EXPECT_EQ(f.status, sip::FrameStatus::error);
  EXPECT_EQ(f.error, Error::message_too_large);
  // Binary garbage is refused at the first byte.
  EXPECT_EQ(sip::frame_stream(std::string_view("\x16\x03\x01", 3)).status, sip::FrameStatus::error);
}
