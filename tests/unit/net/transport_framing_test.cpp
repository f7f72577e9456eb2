// The stream-framing driver (StreamFramer) on its own, without sockets: messages, splits at every
// byte, the resume point inside a body, keep-alives, read phases, size limits, framing errors and
// the 400/513 built for them.
#include "error_response.h"
#include "stream_framer.h"
#include "transport_test_support.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace edge::net::test {
namespace {

using detail::Drained;
using detail::FramingError;
using detail::KeepAlive;
using detail::ReadPhase;
using detail::StreamFramer;

// Records every callback, in order, as one line each.
struct RecordingSink {
  bool hold = false;  // on_message answers false (paused): the message must stay buffered
  std::vector<std::string> events;
  std::vector<std::string> messages;
  std::vector<FramingError> errors;
  std::vector<std::string> error_bytes;  // FramingError::bytes, copied while valid

  bool on_message(std::string_view m) {
    if (hold) {
      events.emplace_back("held");
      return false;
    }
    events.push_back("message " + std::to_string(messages.size()));
    messages.emplace_back(m);
    return true;
  }
  void on_keepalive(KeepAlive k) { events.emplace_back(k == KeepAlive::ping ? "ping" : "crlf"); }
  void on_phase(ReadPhase p) {
    events.emplace_back(p == ReadPhase::idle ? "idle" : p == ReadPhase::header ? "header" : "body");
  }
  void on_error(const FramingError& e) {
    events.emplace_back("error");
    errors.push_back(e);
    error_bytes.emplace_back(e.bytes);
  }
};

static_assert(detail::FramingSink<RecordingSink>);

sip::Limits limits(std::size_t max_message = 65535) {
  sip::Limits l;
  l.max_message_size = max_message;
  return l;
}

// What a socket does: the bytes arrive into prepare()'s room, as much as fits per read, and every
// read is drained. Returns the last drain's result (stops feeding once the driver stopped).
Drained feed(StreamFramer& f, RecordingSink& s, std::string_view bytes) {
  Drained last = Drained::read_more;
  do {
    const auto room = f.prepare();
    EXPECT_GT(room.size(), 0u);
    const std::size_t n = std::min(room.size(), bytes.size());
    std::memcpy(room.data(), bytes.data(), n);
    f.commit(n);
    bytes.remove_prefix(n);
    last = f.drain(s);
  } while (!bytes.empty() && last == Drained::read_more);
  return last;
}

std::vector<std::string> events(std::initializer_list<const char*> l) { return {l.begin(), l.end()}; }

TEST(StreamFramer, OneMessageInOneReadIsDeliveredWhole) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m = sip_request("MESSAGE", "one", "hello");
  EXPECT_EQ(feed(f, s, m), Drained::read_more);
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0], m);
  EXPECT_EQ(s.events, events({"message 0", "idle"}));
  EXPECT_TRUE(f.buffered().empty());
  EXPECT_EQ(f.phase(), ReadPhase::idle);
}

TEST(StreamFramer, TwoMessagesInOneReadAreDeliveredInOrderExactly) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m1 = sip_request("MESSAGE", "one", "hello");
  const std::string m2 = sip_request("OPTIONS", "two");
  EXPECT_EQ(feed(f, s, m1 + m2), Drained::read_more);
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[0], m1);
  EXPECT_EQ(s.messages[1], m2);
  EXPECT_EQ(s.events, events({"message 0", "message 1", "idle"}));
}

TEST(StreamFramer, AMessageSplitAtEveryByteBoundaryIsFramedExactly) {
  const std::string m = sip_request("MESSAGE", "split", "a body of some length");
  const std::size_t body_at = m.find("\r\n\r\n") + 4;
  for (std::size_t cut = 1; cut < m.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    StreamFramer f(limits());
    RecordingSink s;
    EXPECT_EQ(feed(f, s, m.substr(0, cut)), Drained::read_more);
    EXPECT_TRUE(s.messages.empty());
    EXPECT_EQ(f.buffered(), m.substr(0, cut));
    // The read deadline the owner arms: header section pending, then body pending.
    if (cut < body_at) {
      EXPECT_EQ(f.phase(), ReadPhase::header);
      EXPECT_EQ(s.events, events({"header"}));
    } else {
      EXPECT_EQ(f.phase(), ReadPhase::body);
      EXPECT_EQ(s.events, events({"header", "body"}));
    }
    EXPECT_EQ(feed(f, s, m.substr(cut)), Drained::read_more);
    ASSERT_EQ(s.messages.size(), 1u);
    EXPECT_EQ(s.messages[0], m);
    EXPECT_TRUE(s.errors.empty());
    EXPECT_EQ(s.events.back(), "idle");
  }
}

TEST(StreamFramer, AMessageArrivingByteByByteIsFramedOnceWithOnePhaseEach) {
  const std::string m = sip_request("MESSAGE", "trickle", "0123456789");
  StreamFramer f(limits());
  RecordingSink s;
  for (char c : m) EXPECT_EQ(feed(f, s, std::string_view(&c, 1)), Drained::read_more);
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0], m);
  EXPECT_EQ(s.events, events({"header", "body", "message 0", "idle"}));
}

// The framing bug of b6844b6: a header-end search resumed inside a body found the next message's
// header end, so a body split across reads with a message behind it was a framing error.
TEST(StreamFramer, ABodySplitAcrossReadsWithTheNextMessageBehindItIsFramedExactly) {
  const std::string m1 = sip_request("MESSAGE", "split-body", "a body of twenty-eight bytes");
  const std::string m2 = sip_request("MESSAGE", "behind", "next");
  const std::size_t body_at = m1.find("\r\n\r\n") + 4;
  for (std::size_t cut = body_at; cut < m1.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    StreamFramer f(limits());
    RecordingSink s;
    EXPECT_EQ(feed(f, s, m1.substr(0, cut)), Drained::read_more);
    EXPECT_EQ(feed(f, s, m1.substr(cut) + m2), Drained::read_more);
    EXPECT_TRUE(s.errors.empty());
    ASSERT_EQ(s.messages.size(), 2u);
    EXPECT_EQ(s.messages[0], m1);
    EXPECT_EQ(s.messages[1], m2);
  }
  // And with the second message split too, at every byte of the pair.
  const std::string both = m1 + m2;
  for (std::size_t cut = 1; cut < both.size(); ++cut) {
    SCOPED_TRACE("pair cut at " + std::to_string(cut));
    StreamFramer f(limits());
    RecordingSink s;
    feed(f, s, both.substr(0, cut));
    EXPECT_EQ(feed(f, s, both.substr(cut)), Drained::read_more);
    EXPECT_TRUE(s.errors.empty());
    ASSERT_EQ(s.messages.size(), 2u);
    EXPECT_EQ(s.messages[0], m1);
    EXPECT_EQ(s.messages[1], m2);
  }
}

TEST(StreamFramer, CrlfAndCrlfCrlfKeepAlivesBetweenMessages) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m1 = sip_request("OPTIONS", "k1");
  const std::string m2 = sip_request("OPTIONS", "k2");
  const std::string m3 = sip_request("OPTIONS", "k3");
  EXPECT_EQ(feed(f, s, "\r\n\r\n" + m1 + "\r\n\r\n" + m2 + "\r\n" + m3 + "\r\n\r\n"), Drained::read_more);
  ASSERT_EQ(s.messages.size(), 3u);
  EXPECT_EQ(s.messages[0], m1);
  EXPECT_EQ(s.messages[1], m2);
  EXPECT_EQ(s.messages[2], m3);
  EXPECT_EQ(s.events,
            events({"ping", "message 0", "ping", "message 1", "crlf", "message 2", "ping", "idle"}));
}

TEST(StreamFramer, AKeepAliveSplitAcrossReadsIsOnePing) {
  StreamFramer f(limits());
  RecordingSink s;
  // "\r\n" alone may be the first half of a ping: wait, but no message has begun, so no header
  // deadline (issue 17: a client's lone CRLF keep-alive used to arm it, and the connection was
  // closed at limits.header_read_timeout_ms).
  EXPECT_EQ(feed(f, s, "\r\n"), Drained::read_more);
  EXPECT_EQ(s.events, events({"idle"}));
  EXPECT_EQ(f.phase(), ReadPhase::idle);
  EXPECT_EQ(feed(f, s, "\r"), Drained::read_more);
  EXPECT_EQ(s.events, events({"idle", "idle"}));
  EXPECT_EQ(feed(f, s, "\n"), Drained::read_more);
  EXPECT_EQ(s.events, events({"idle", "idle", "ping", "idle"}));
  // A lone CRLF is known to be one as soon as a start line follows it (RFC 3261 §7.5: ignored).
  s.events.clear();
  const std::string m = sip_request("OPTIONS", "after-crlf");
  EXPECT_EQ(feed(f, s, "\r\n"), Drained::read_more);
  EXPECT_EQ(feed(f, s, m), Drained::read_more);
  EXPECT_EQ(s.events, events({"idle", "crlf", "message 0", "idle"}));
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0], m);
}

// A message followed, in the same read, by the first CRLF of the next keep-alive: the body
// deadline of the message must not outlive it.
TEST(StreamFramer, ACrlfBehindAMessageReportsIdle) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m = sip_request("OPTIONS", "crlf-behind");
  EXPECT_EQ(feed(f, s, m.substr(0, 10)), Drained::read_more);
  EXPECT_EQ(feed(f, s, m.substr(10) + "\r\n"), Drained::read_more);
  EXPECT_EQ(s.events, events({"header", "message 0", "idle"}));
}

TEST(StreamFramer, AHeldMessageStaysBufferedAndIsDeliveredByTheNextDrain) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m1 = sip_request("OPTIONS", "held-1");
  const std::string m2 = sip_request("OPTIONS", "held-2");
  s.hold = true;  // paused
  EXPECT_EQ(feed(f, s, "\r\n\r\n" + m1 + m2), Drained::stopped);
  EXPECT_EQ(s.events, events({"ping", "held"}));  // keep-alives are still answered while paused
  EXPECT_EQ(f.buffered(), m1 + m2);
  EXPECT_EQ(f.drain(s), Drained::stopped);  // still paused: nothing moves
  EXPECT_EQ(f.buffered(), m1 + m2);
  s.hold = false;  // resumed
  EXPECT_EQ(f.drain(s), Drained::read_more);
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[0], m1);
  EXPECT_EQ(s.messages[1], m2);
}

TEST(StreamFramer, AMessageHeldWhileItsBodyWasSplitResumesAtItsOwnHeaderEnd) {
  const std::string m1 = sip_request("MESSAGE", "held-split", "a body split across two reads");
  const std::string m2 = sip_request("MESSAGE", "behind", "x");
  StreamFramer f(limits());
  RecordingSink s;
  EXPECT_EQ(feed(f, s, m1.substr(0, m1.size() - 5)), Drained::read_more);
  s.hold = true;
  EXPECT_EQ(feed(f, s, m1.substr(m1.size() - 5) + m2), Drained::stopped);
  s.hold = false;
  EXPECT_EQ(f.drain(s), Drained::read_more);
  EXPECT_TRUE(s.errors.empty());
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[0], m1);
  EXPECT_EQ(s.messages[1], m2);
}

TEST(StreamFramer, AMessageOfExactlyTheLimitIsDeliveredOneByteMoreIsOversized) {
  const std::string head = sip_request("MESSAGE", "limit", "");
  const std::size_t limit = 2048;
  // Content-Length goes from 1 to 4 digits: size the body for the final header.
  std::string m;
  for (std::size_t body = limit - head.size() - 4; body < limit; ++body) {
    m = sip_request("MESSAGE", "limit", std::string(body, 'x'));
    if (m.size() == limit) break;
  }
  ASSERT_EQ(m.size(), limit);
  {
    StreamFramer f(limits(limit));
    RecordingSink s;
    EXPECT_EQ(feed(f, s, m), Drained::read_more);
    ASSERT_EQ(s.messages.size(), 1u);
    EXPECT_EQ(s.messages[0], m);
  }
  {
    const std::size_t body = m.size() - (m.find("\r\n\r\n") + 4);
    const std::string over = sip_request("MESSAGE", "limit", std::string(body + 1, 'x'));
    ASSERT_EQ(over.size(), limit + 1);
    StreamFramer f(limits(limit));
    RecordingSink s;
    EXPECT_EQ(feed(f, s, over), Drained::stopped);
    EXPECT_TRUE(s.messages.empty());
    ASSERT_EQ(s.errors.size(), 1u);
    EXPECT_EQ(s.errors[0].error, sip::Error::content_length_too_large);
    EXPECT_EQ(s.errors[0].status, 513);
    EXPECT_TRUE(s.errors[0].oversized);
    EXPECT_EQ(s.error_bytes[0].rfind("MESSAGE sip:", 0), 0u);
  }
}

TEST(StreamFramer, AHeaderSectionThatNeverEndsIsOversizedAtTheLimit) {
  const std::size_t limit = 1024;
  StreamFramer f(limits(limit));
  RecordingSink s;
  std::string m = "OPTIONS sip:bob@example.test SIP/2.0\r\n";
  while (m.size() < 2 * limit) m += "X-Filler: 0123456789abcdef0123456789abcdef\r\n";
  Drained last = Drained::read_more;
  for (std::size_t at = 0; at < m.size() && last == Drained::read_more; at += 100)
    last = feed(f, s, std::string_view(m).substr(at, 100));
  EXPECT_EQ(last, Drained::stopped);
  EXPECT_TRUE(s.messages.empty());
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].error, sip::Error::message_too_large);
  EXPECT_EQ(s.errors[0].status, 513);
  EXPECT_TRUE(s.errors[0].oversized);
  EXPECT_EQ(s.error_bytes[0].size(), limit);  // never buffered beyond the limit
  EXPECT_EQ(s.events, events({"header", "error"}));
}

TEST(StreamFramer, AMessageLargerThanTheFirstBufferGrowsItAndArrivesWhole) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m = sip_request("MESSAGE", "big", std::string(40'000, 'b'));
  for (std::size_t at = 0; at < m.size(); at += 1000) feed(f, s, std::string_view(m).substr(at, 1000));
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0], m);
  EXPECT_TRUE(s.errors.empty());
}

TEST(StreamFramer, AMalformedHeaderSectionIsAFramingError400) {
  struct Case {
    const char* what;
    std::string bytes;
    sip::Error error;
  };
  std::string bad_length = sip_request("OPTIONS", "bad-length");
  bad_length.replace(bad_length.find("Content-Length: 0"), 17, "Content-Length: x");
  std::string conflicting = sip_request("OPTIONS", "conflicting");
  conflicting.insert(conflicting.find("Content-Length: 0"), "Content-Length: 5\r\n");
  const std::vector<Case> cases = {
      {"Content-Length not a number", bad_length, sip::Error::bad_content_length},
      {"two Content-Length values", conflicting, sip::Error::conflicting_content_length},
      {"a start that no message has", "\x16\x03\x01 binary", sip::Error::bad_start_line},
      {"LF without CR between messages", "\n", sip::Error::bad_line_ending},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    StreamFramer f(limits());
    RecordingSink s;
    EXPECT_EQ(feed(f, s, c.bytes), Drained::stopped);
    EXPECT_TRUE(s.messages.empty());
    ASSERT_EQ(s.errors.size(), 1u);
    EXPECT_EQ(s.errors[0].error, c.error);
    EXPECT_EQ(s.errors[0].status, 400);
    EXPECT_FALSE(s.errors[0].oversized);
    EXPECT_EQ(s.error_bytes[0], c.bytes);
  }
}

TEST(StreamFramer, ContentLengthMissingOnAStreamIsAFramingError400) {
  std::string m = sip_request("OPTIONS", "no-length");
  m.erase(m.find("Content-Length: 0\r\n"), 19);
  const std::string before = sip_request("OPTIONS", "fine");
  StreamFramer f(limits());
  RecordingSink s;
  EXPECT_EQ(feed(f, s, before + m), Drained::stopped);
  ASSERT_EQ(s.messages.size(), 1u);  // what came before is delivered; the error starts at m
  EXPECT_EQ(s.messages[0], before);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].error, sip::Error::missing_content_length);
  EXPECT_EQ(s.errors[0].status, 400);
  EXPECT_EQ(s.error_bytes[0], m);
}

TEST(StreamFramer, ClearForgetsAPartialMessage) {
  StreamFramer f(limits());
  RecordingSink s;
  const std::string m = sip_request("MESSAGE", "cleared", "body");
  feed(f, s, m.substr(0, m.size() - 2));
  EXPECT_EQ(f.phase(), ReadPhase::body);
  f.clear();  // the core link reconnected
  EXPECT_TRUE(f.buffered().empty());
  EXPECT_EQ(f.phase(), ReadPhase::idle);
  EXPECT_EQ(feed(f, s, m), Drained::read_more);
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.messages[0], m);
}

// What a client connection answers to those errors (error_response.h).
TEST(FramingErrorResponse, AnswersTheRequestItCouldNotFrameWithoutItsContentLength) {
  TransportConfig cfg;
  std::string bad_length = sip_request("OPTIONS", "answer-me");
  bad_length.replace(bad_length.find("Content-Length: 0"), 17, "Content-Length: x");
  StreamFramer f(limits());
  RecordingSink s;
  feed(f, s, bad_length);
  ASSERT_EQ(s.errors.size(), 1u);
  const std::string r = detail::error_response(s.error_bytes[0], s.errors[0].status, cfg);
  EXPECT_EQ(r.rfind("SIP/2.0 400 ", 0), 0u) << r;
  EXPECT_NE(r.find("Call-ID: answer-me\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-answer-me"), std::string::npos) << r;
  EXPECT_NE(r.find("Server: edge\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.find("Content-Length: x"), std::string::npos) << r;

  const std::string big = detail::error_response(s.error_bytes[0], 513, cfg);
  EXPECT_EQ(big.rfind("SIP/2.0 513 ", 0), 0u) << big;
}

TEST(FramingErrorResponse, NothingWhenTheBytesCannotBeAddressed) {
  TransportConfig cfg;
  EXPECT_TRUE(detail::error_response("\x16\x03\x01 binary", 400, cfg).empty());  // no header section
  EXPECT_TRUE(
      detail::error_response("SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", 400, cfg).empty());  // a response
  EXPECT_TRUE(detail::error_response(sip_request("OPTIONS", "zero"), 0, cfg).empty());    // no status
  EXPECT_TRUE(detail::error_response("ACK sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n", 400, cfg).empty());
}

// Issue 17: what could not be framed is answered from whatever of it reads, never with silence
// when there is a method: a missing Call-ID, a second CSeq, a header section cut off by the limit.
TEST(FramingErrorResponse, AnswersFromWhatReadsOfABrokenHeaderSection) {
  TransportConfig cfg;
  std::string no_call_id = sip_request("OPTIONS", "gone");
  no_call_id.erase(no_call_id.find("Call-ID: gone\r\n"), 15);
  no_call_id.replace(no_call_id.find("Content-Length: 0"), 17, "Content-Length: -1");
  std::string r = detail::error_response(no_call_id, 400, cfg);
  EXPECT_EQ(r.rfind("SIP/2.0 400 ", 0), 0u) << r;
  EXPECT_NE(r.find("Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-gone"), std::string::npos) << r;
  EXPECT_EQ(r.find("Call-ID"), std::string::npos) << r;

  std::string two_cseq = sip_request("OPTIONS", "twice");
  two_cseq.insert(two_cseq.find("Content-Length"), "CSeq: 99 OPTIONS\r\nContent-Length: 5\r\n");
  r = detail::error_response(two_cseq, 400, cfg);
  EXPECT_EQ(r.rfind("SIP/2.0 400 ", 0), 0u) << r;
  EXPECT_EQ(r.find("CSeq: 99"), std::string::npos) << "only the first CSeq is copied: " << r;

  // Oversized: the header section never ended; its complete lines still address a 513.
  std::string cut = sip_request("OPTIONS", "cut");
  cut.resize(cut.find("Content-Length"));
  cut += "X-Long: " + std::string(1000, 'a');
  r = detail::error_response(cut, 513, cfg);
  EXPECT_EQ(r.rfind("SIP/2.0 513 ", 0), 0u) << r;
  EXPECT_NE(r.find("Call-ID: cut\r\n"), std::string::npos) << r;
}

}  // namespace
}  // namespace edge::net::test
