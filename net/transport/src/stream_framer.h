// Internal: StreamFramer, the one stream-framing driver of client connections and the core link.
#pragma once

#include "frame_buffer.h"

#include "edge/net/sip/error.h"
#include "edge/net/sip/limits.h"
#include "edge/net/sip/message.h"

#include <algorithm>
#include <cctype>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace edge::net::detail {

// Why a driver and not a composed operation. Beast's http::async_read is a
// composed read-and-parse over any AsyncReadStream; this is the same job cut
// the other way: the owner reads (async_read_some into prepare(), then
// commit()), the driver frames everything buffered and calls the owner back.
//  - Pipelined messages are handled inline, in one pass over the buffer. A
//    composed operation must not complete inside its initiating call, so every
//    message already buffered behind the first would cost a post through the
//    io_context (the core link carries tens of thousands of messages a second).
//  - Pausing leaves a whole message in the buffer and resumes from it later
//    without a read; a keep-alive is answered on the owner's write queue; the
//    core link drops stale handlers by connection generation. All of that stays
//    with the owner, whose callbacks decide.
//  - Without I/O the driver is tested byte by byte, deterministically
//    (tests/unit/net/transport_framing_test.cpp), at every split of a message.
//
// What it owns is what the last framing bug was about: the buffer, the resume
// point of the header-end search (reset on every consume, kept across reads,
// so a search resumed inside a body finds this message's header end, not the
// next one's) and the read phase (header section pending, body pending).

// A keep-alive between messages on a stream.
enum class KeepAlive : std::uint8_t {
  ping,  // CRLFCRLF (RFC 5626 §4.4.1): answer one CRLF at once
  crlf,  // a lone CRLF before a start line (RFC 3261 §7.5): ignore it, but it is traffic
};

// Where the message being read stands; a client connection bounds header and body with read deadlines.
enum class ReadPhase : std::uint8_t {
  idle,    // between messages; reported each time nothing is left buffered
  header,  // a message has begun; its header section is not complete
  body,    // header section complete; the body (Content-Length) is not
};

// The stream cannot be framed from here on: answer if possible, then close.
struct FramingError {
  sip::Error error = sip::Error::ok;
  int status = 0;          // the answer to send: 400, 513 (sip::suggested_status); 0: none
  bool oversized = false;  // over max_message_size (by its Content-Length or by its header section)
  std::string_view bytes;  // everything buffered, from the start of the unframeable message
};

// The owner's callbacks, all on the owner's thread, from inside drain().
template <class S>
concept FramingSink = requires(S& s, std::string_view m, KeepAlive k, ReadPhase p, const FramingError& e) {
  // One complete message, [0, size) of what is buffered. true: handled, go on with
  // the next; false: stop and keep it buffered (paused: the next drain() delivers
  // it again; or the owner closed or reset itself meanwhile).
  { s.on_message(m) } -> std::same_as<bool>;
  {s.on_keepalive(k)};  // already consumed
  {s.on_phase(p)};      // header / body: on entering it; idle: each time the buffer runs empty
  {s.on_error(e)};      // drain() stops; the owner answers and closes, or resets
};

// Why drain() returned.
enum class Drained : std::uint8_t {
  read_more,  // everything buffered is handled or incomplete: read into prepare() (it has room)
  stopped,    // on_message said stop, or on_error was called
};

class StreamFramer {
 public:
  explicit StreamFramer(const sip::Limits& limits) : limits_(limits), buf_(limits.max_message_size) {}

  // Where to read next and how much arrived.
  boost::asio::mutable_buffer prepare() { return buf_.prepare(); }
  void commit(std::size_t n) noexcept { buf_.commit(n); }

  // Frames everything buffered, calling the sink back in stream order.
  template <FramingSink Sink>
  Drained drain(Sink& sink);

  // Forgets everything buffered (the core link starts a new connection).
  void clear() noexcept {
    buf_.clear();
    resume_ = 0;
    phase_ = ReadPhase::idle;
    skip_ = 0;
  }
  // After an on_error for a Content-Length over max_message_size: drops that
  // message, its header section and its body (still arriving, maybe), so the
  // next drain() frames what follows it. False when its size cannot be read
  // (its header section is not complete): the stream cannot be resynchronised.
  bool skip_oversized() noexcept;
  std::string_view buffered() const noexcept { return buf_.data(); }
  ReadPhase phase() const noexcept { return phase_; }

 private:
  void consume(std::size_t n) noexcept {
    buf_.consume(n);
    resume_ = 0;  // the search for the next message starts at its first byte
  }
  template <FramingSink Sink>
  Drained fail(Sink& sink, sip::Error e) {
    const bool too_big = e == sip::Error::message_too_large || e == sip::Error::content_length_too_large;
    sink.on_error(FramingError{e, sip::suggested_status(e), too_big, buf_.data()});
    return Drained::stopped;
  }

  const sip::Limits limits_;
  FrameBuffer buf_;
  std::size_t resume_ = 0;  // frame_stream's resume point for the message at the start of the buffer
  ReadPhase phase_ = ReadPhase::idle;
  std::size_t skip_ = 0;  // bytes of a skipped oversized message still to drop as they arrive
};

inline bool StreamFramer::skip_oversized() noexcept {
  const std::string_view data = buf_.data();
  const auto end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return false;
  // The header lines up to the empty one: Content-Length (or its compact form l), case-insensitive.
  std::size_t at = data.find("\r\n");
  std::optional<std::size_t> length;
  while (at < end) {
    const std::size_t line = at + 2;
    const std::size_t next = data.find("\r\n", line);
    const std::string_view h = data.substr(line, next - line);
    const auto colon = h.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = h.substr(0, colon);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      const auto ieq = [](std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
          if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
        return true;
      };
      if (ieq(name, "content-length") || ieq(name, "l")) {
        std::size_t v = 0;
        std::size_t i = colon + 1;
        while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
        const std::size_t first = i;
        for (; i < h.size() && h[i] >= '0' && h[i] <= '9' && v < (std::size_t{1} << 40); ++i) v = v * 10 + (h[i] - '0');
        if (i == first) return false;
        length = v;
      }
    }
    at = next;
  }
  if (!length) return false;
  skip_ = end + 4 + *length;
  const std::size_t n = std::min(skip_, data.size());
  consume(n);
  skip_ -= n;
  phase_ = ReadPhase::idle;
  return true;
}

template <FramingSink Sink>
Drained StreamFramer::drain(Sink& sink) {
  for (;;) {
    if (skip_ > 0) {  // the rest of a skipped oversized message
      const std::size_t n = std::min(skip_, buf_.data().size());
      consume(n);
      skip_ -= n;
      if (skip_ > 0) return Drained::read_more;
    }
    const std::string_view data = buf_.data();
    if (data.empty()) {
      phase_ = ReadPhase::idle;
      sink.on_phase(ReadPhase::idle);
      return Drained::read_more;
    }
    const sip::Frame f = sip::frame_stream(data, limits_, resume_);
    switch (f.status) {
      case sip::FrameStatus::keep_alive:
        consume(f.size);
        sink.on_keepalive(KeepAlive::ping);
        continue;
      case sip::FrameStatus::stray_crlf:
        consume(f.size);
        sink.on_keepalive(KeepAlive::crlf);
        continue;
      case sip::FrameStatus::message:
        if (!sink.on_message(data.substr(0, f.size))) return Drained::stopped;
        consume(f.size);
        phase_ = ReadPhase::idle;  // between messages; the next frame (or an empty buffer) says what follows
        continue;
      case sip::FrameStatus::need_more:
        if (data[0] == '\r') {
          // "\r", "\r\n" or "\r\n\r": a keep-alive or a CRLF before a start line, not yet
          // told apart. No message has begun (RFC 3261 §7.5): no header deadline.
          phase_ = ReadPhase::idle;
          sink.on_phase(ReadPhase::idle);
          return Drained::read_more;
        }
        if (phase_ == ReadPhase::idle) {
          phase_ = ReadPhase::header;
          sink.on_phase(ReadPhase::header);
        }
        if (f.size != 0 && phase_ == ReadPhase::header) {  // the header section is in: f.size is the total
          phase_ = ReadPhase::body;
          sink.on_phase(ReadPhase::body);
        }
        resume_ = f.scanned;
        // frame_stream refuses a message before it fills max_message_size; keep the guard anyway.
        if (buf_.prepare().size() == 0) return fail(sink, sip::Error::message_too_large);
        return Drained::read_more;
      case sip::FrameStatus::error:
        return fail(sink, f.error);
    }
  }
}

}  // namespace edge::net::detail
