// A parsed SIP message: views into the caller's buffer, header slots stored inline.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "edge/net/sip/error.h"
#include "edge/net/sip/limits.h"

namespace edge::sip {

enum class Method : std::uint8_t {
  other,
  invite,
  ack,
  bye,
  cancel,
  register_,
  options,
  info,
  update,
  prack,
  subscribe,
  notify,
  refer,
  message,
  publish,
};

Method method_from_name(std::string_view name) noexcept;  // case-sensitive, as RFC 3261 §7.1
std::string_view method_name(Method m) noexcept;          // "" for Method::other

// Headers the edge reads or writes. Everything else is HeaderId::other and passes through.
enum class HeaderId : std::uint8_t {
  other,
  via,
  route,
  record_route,
  path,
  contact,
  from,
  to,
  call_id,
  cseq,
  max_forwards,
  content_length,
  content_type,
  content_encoding,
  supported,
  require,
  proxy_require,
  unsupported,
  flow_timer,
  expires,
  retry_after,
  allow,
  user_agent,
  server,
  subject,
  event,
  allow_events,
  refer_to,
  referred_by,
  session_expires,
  accept_contact,
  reject_contact,
  request_disposition,
  identity,
  identity_info,
  count_,
};

// Case-insensitive; knows the compact forms (v f t i m l c e k s o u r b x y a j d n).
HeaderId header_id(std::string_view name) noexcept;
std::string_view canonical_name(HeaderId id) noexcept;  // "" for HeaderId::other
// RFC 3261 §7.3.1 and RFC 5626 §10: these may appear once; a second copy is an error.
bool is_single_valued(HeaderId id) noexcept;

// One header line as received. `value` is trimmed and may still contain folding
// (CRLF followed by SP/HT), which every accessor treats as linear white space.
struct Header {
  std::string_view name;
  std::string_view value;
  std::uint32_t line_begin = 0;  // offset of the line's first byte in Message::raw()
  std::uint32_t line_end = 0;    // offset just past the line's final CRLF
  HeaderId id = HeaderId::other;
};

struct CSeq {
  std::uint32_t number = 0;
  std::string_view method;
};

// Valid only while the buffer it was parsed from is alive and unchanged.
class Message {
 public:
  // Typical requests carry 10-20 header lines; 40 covers a forwarded INVITE with a
  // long Via/Record-Route stack. Beyond that the slots move to the heap once.
  static constexpr std::size_t kInlineHeaders = 40;

  bool is_request() const noexcept { return status_ == 0; }
  std::string_view raw() const noexcept { return raw_; }
  std::string_view start_line() const noexcept { return start_line_; }

  // Requests
  Method method() const noexcept { return method_; }
  std::string_view method_name() const noexcept { return method_name_; }
  std::string_view request_uri() const noexcept { return request_uri_; }
  // Responses
  int status() const noexcept { return status_; }
  std::string_view reason_phrase() const noexcept { return reason_; }

  std::span<const Header> headers() const noexcept {
    if (overflow_.empty()) return {inline_.data(), header_count_};
    return {overflow_.data(), overflow_.size()};
  }
  const Header* first(HeaderId id) const noexcept;
  std::size_t count(HeaderId id) const noexcept;

  // Offset of the empty line that ends the header section (the message continues with CRLF, body).
  std::size_t headers_end() const noexcept { return headers_end_; }
  std::string_view body() const noexcept { return body_; }

  // Values of the single-valued headers, checked while parsing.
  std::optional<std::uint32_t> content_length() const noexcept { return content_length_; }
  std::optional<std::uint32_t> max_forwards() const noexcept { return max_forwards_; }
  std::optional<std::uint32_t> flow_timer() const noexcept { return flow_timer_; }
  const CSeq& cseq() const noexcept { return cseq_; }
  std::string_view call_id() const noexcept { return call_id_; }

  // Offset in raw() of a view obtained from this message (any accessor result).
  std::size_t offset_of(std::string_view v) const noexcept {
    return static_cast<std::size_t>(v.data() - raw_.data());
  }

 private:
  friend class Parser;
  void reset() noexcept;
  Header& add_slot();  // grows into overflow_ when the inline slots run out

  std::string_view raw_;
  std::string_view start_line_;
  std::string_view method_name_;
  std::string_view request_uri_;
  std::string_view reason_;
  std::string_view body_;
  std::string_view call_id_;
  CSeq cseq_;
  std::optional<std::uint32_t> content_length_;
  std::optional<std::uint32_t> max_forwards_;
  std::optional<std::uint32_t> flow_timer_;
  std::size_t headers_end_ = 0;
  int status_ = 0;
  Method method_ = Method::other;

  std::size_t header_count_ = 0;
  std::array<std::uint32_t, static_cast<std::size_t>(HeaderId::count_)> first_{};  // index + 1, 0 = none
  std::array<Header, kInlineHeaders> inline_{};
  std::vector<Header> overflow_;  // empty on the common path
};

struct ParseOptions {
  Limits limits{};
  // Stream transports (TCP, TLS; not WebSocket, which frames by itself) require Content-Length
  // (RFC 3261 §18.3). A datagram without one has a body running to the end of the datagram.
  bool stream = false;
};

// Parses one message from `bytes`. On a datagram, bytes after the Content-Length body are
// ignored (RFC 3261 §18.3); on a stream, pass exactly what frame_stream() delimited.
// On error `out` holds what was parsed before the failure (maybe nothing) and must not be used
// to forward the message.
Error parse(std::string_view bytes, Message& out, const ParseOptions& options = {});

// For a request parse() refused: reads what it can so an error response can still be built
// (RFC 3261 §8.2.6.2, §16.3 step 1: a 400 rather than silence). Keeps every Via line and the
// first From, To, Call-ID and CSeq line; skips every other line, a line that is not
// `token *WSP ":" ...` or that holds a control character, and any second copy. The start line
// may be broken: method_name() is its first word when that is a token, else the CSeq method.
// Nothing else is checked: only for build_response, never for forwarding.
// Error::not_a_request for a response, empty_message for nothing, bad_start_line when no method
// reads (neither the start line's first word nor a CSeq); ok otherwise (the result may lack
// any of these headers).
Error salvage(std::string_view bytes, Message& out, const Limits& limits = {});

enum class FrameStatus : std::uint8_t {
  need_more,   // size: total bytes the message needs once the header section is complete, else 0
  message,     // size: the message occupies bytes [0, size)
  keep_alive,  // CRLFCRLF ping (RFC 5626 §4.4.1): answer CRLF at once; size 4
  stray_crlf,  // a lone CRLF before a start line (RFC 3261 §7.5: ignore it); size 2
  error,       // the stream cannot be resynchronised: answer if possible, then close
};

struct Frame {
  FrameStatus status = FrameStatus::need_more;
  std::size_t size = 0;
  Error error = Error::ok;
  // With need_more: how far the search for the end of the header section got. Pass it back as
  // resume_from (with the same buffer start) so a peer trickling bytes costs linear, not
  // quadratic, work. When size is non-zero, simply wait until that many bytes are buffered.
  std::size_t scanned = 0;
};

// Delimits the next message on a stream from the bytes received so far. A missing,
// malformed, duplicated or over-limit Content-Length is an error: a stream cannot be framed
// without it (RFC 3261 §18.3).
Frame frame_stream(std::string_view bytes, const Limits& limits = {}, std::size_t resume_from = 0) noexcept;

}  // namespace edge::sip
