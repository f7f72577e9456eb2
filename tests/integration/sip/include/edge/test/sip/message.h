// A small, forgiving SIP message model for tests: parse, inspect, edit, serialize.
//
// Deliberately independent of net/sip (the product parser under test): a test
// that used the product's parser to check the product would prove nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::test {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Long form of a header name, with compact forms expanded ("v" -> "Via",
// "m" -> "Contact", ...) and the usual capitalisation ("call-id" -> "Call-ID").
// Unknown names come back unchanged.
std::string canonical_header_name(std::string_view name);

// Case-insensitive ASCII comparison.
bool iequals(std::string_view a, std::string_view b);

class SipMessage {
 public:
  // Throws ParseError when the start line or a header line is malformed. The
  // body is everything after the blank line (framing is the transport's job).
  static SipMessage parse(std::string_view text);

  static SipMessage request(std::string method, std::string request_uri);
  static SipMessage response(int status, std::string reason);

  bool is_request() const { return !method_.empty(); }
  bool is_response() const { return method_.empty(); }
  const std::string& method() const { return method_; }
  const std::string& request_uri() const { return request_uri_; }
  int status() const { return status_; }
  const std::string& reason() const { return reason_; }
  void set_request_uri(std::string uri) { request_uri_ = std::move(uri); }

  // Headers keep their order. Lookups are case-insensitive and accept compact forms.
  using Header = std::pair<std::string, std::string>;
  const std::vector<Header>& headers() const { return headers_; }
  // First value of the header, as written (one line; may hold a comma list).
  std::optional<std::string> header(std::string_view name) const;
  // Every value, in order, with comma-separated lists split into their elements
  // (commas inside <>, "" or after a ';' parameter's quotes are respected).
  std::vector<std::string> header_values(std::string_view name) const;
  bool has_header(std::string_view name) const { return header(name).has_value(); }
  // True when a token-list header (Supported, Require, Allow, ...) holds the token.
  bool has_token(std::string_view header_name, std::string_view token) const;

  SipMessage& add_header(std::string name, std::string value);      // appended
  SipMessage& prepend_header(std::string name, std::string value);  // before the first
  SipMessage& set_header(std::string name, std::string value);      // replaces all of that name
  SipMessage& remove_header(std::string_view name);                 // all of that name
  // Removes only the first value of that name (first list element if it is a list).
  SipMessage& remove_first_value(std::string_view name);

  const std::string& body() const { return body_; }
  SipMessage& set_body(std::string body, std::string content_type = "application/sdp");

  // Shortcuts over the usual headers; throw ParseError when the header is missing.
  std::string call_id() const;
  std::uint32_t cseq_number() const;
  std::string cseq_method() const;
  std::string from_tag() const;  // empty when absent
  std::optional<std::string> to_tag() const;
  std::string top_via() const;

  // Start line, the headers in order, a Content-Length computed from the body
  // (any stored Content-Length is replaced), blank line, body.
  std::string to_string() const;
  // The bytes this message was parsed from (empty for built messages).
  const std::string& raw() const { return raw_; }
  // One line for logs: "INVITE sip:a@b" or "200 OK (INVITE)".
  std::string summary() const;

 private:
  std::string method_;
  std::string request_uri_;
  int status_ = 0;
  std::string reason_;
  std::vector<Header> headers_;
  std::string body_;
  std::string raw_;
};

// --- Pieces of header values -------------------------------------------------

// Splits "a, <sip:b,c>;p="x,y", d" into its elements, respecting <> and quotes.
std::vector<std::string> split_header_list(std::string_view value);
// The URI of a name-addr or addr-spec header value: the part inside <>, or the
// text up to the first ';' when there are no brackets.
std::string uri_of(std::string_view header_value);
// A header parameter (after the URI / '>'): "tag", "branch", "expires", "+sip.instance".
// A flag parameter gives an empty string; absent gives nullopt. Quotes are kept.
std::optional<std::string> header_param(std::string_view header_value, std::string_view name);
// A URI parameter ("lr", "ob", "transport"), same conventions.
std::optional<std::string> uri_param(std::string_view uri, std::string_view name);
// The user part of a SIP URI ("sip:alice@host" -> "alice"); empty when there is none.
std::string uri_user(std::string_view uri);
// "host:port" of a SIP URI without user and parameters ("sip:a@[::1]:5060;lr" -> "[::1]:5060").
std::string uri_host_port(std::string_view uri);

// --- Stream framing (TCP, TLS) ---------------------------------------------

// Cuts a byte stream into SIP messages by Content-Length (RFC 3261 §18.3) and
// recognises keep-alives between messages (RFC 5626 §4.4.1): a lone CRLF is a
// pong, a double CRLF a ping.
class StreamFramer {
 public:
  void feed(std::string_view bytes);
  // The next complete message (raw text), if one has arrived.
  std::optional<std::string> next();
  std::size_t pongs() const { return pongs_; }
  std::size_t pings() const { return pings_; }
  std::size_t buffered() const { return buffer_.size(); }

 private:
  void skip_keepalives();
  std::string buffer_;
  std::size_t pongs_ = 0;
  std::size_t pings_ = 0;
};

// A minimal SDP offer/answer body: one PCMU audio stream at addr:rtp_port.
std::string make_sdp(std::string_view addr, std::uint16_t rtp_port, std::uint64_t session_id = 1);

}  // namespace edge::test
