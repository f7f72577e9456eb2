// Structured, lazy accessors over a parsed Message: Via, name-addr (From/To/Route/Record-Route/
// Path/Contact), option tags. Every result is a view into the message buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "edge/net/sip/error.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/uri.h"

namespace edge::sip {

// One element of a comma-separated header value (RFC 3261 §7.3.1).
struct HeaderValue {
  std::string_view text;          // trimmed element
  std::size_t header_index = 0;   // index into Message::headers()
  std::size_t index_in_line = 0;  // 0 for the first element of its line
};

// Walks every element of every header line with a given id, in message order. Commas inside
// quoted strings and <...> do not split. Use only on list-valued headers.
class ValueIterator {
 public:
  ValueIterator(const Message& m, HeaderId id) noexcept;
  bool next(HeaderValue& out) noexcept;  // false at the end or on error()
  bool error() const noexcept { return error_; }

 private:
  bool load_line() noexcept;
  const Message* m_;
  HeaderId id_;
  std::size_t header_ = 0;  // next header line to look at
  std::string_view rest_;   // unsplit remainder of the current line
  std::size_t current_ = 0;
  std::size_t in_line_ = 0;
  bool error_ = false;
};

// Header parameters: SEMI = SWS ";" SWS, generic-param = token [ EQUAL gen-value ], gen-value
// = token / host / quoted-string (quotes kept in the value).
class HeaderParamReader {
 public:
  explicit HeaderParamReader(std::string_view params) noexcept : s_(params) {}
  bool next(Param& p) noexcept;  // false at the end or on error()
  bool error() const noexcept { return error_; }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
  bool error_ = false;
};
std::optional<Param> find_header_param(std::string_view params, std::string_view name) noexcept;
// The content of a quoted-string, without quotes and still with its backslash escapes;
// any other text is returned as is.
std::string_view unquote(std::string_view v) noexcept;

// Via: sent-protocol sent-by *( SEMI via-params ) (RFC 3261 §20.42, RFC 3581, RFC 6223).
struct Via {
  std::string_view text;              // the whole via-parm
  std::string_view protocol_name;     // "SIP"
  std::string_view protocol_version;  // "2.0"
  std::string_view transport;         // "UDP", "TCP", "TLS", "WS", "WSS", "SCTP"...
  std::string_view sent_by;           // host[:port] as received, brackets included
  std::string_view host;              // without brackets for IPv6
  bool host_is_ipv6 = false;
  std::optional<std::uint16_t> port;
  std::string_view params;  // from the first ';' to the end of text (empty view at the end if none)
  std::string_view branch;
  std::string_view received;
  std::string_view maddr;
  std::optional<std::uint8_t> ttl;
  bool rport = false;  // present, with or without a value
  std::optional<std::uint16_t> rport_value;
  bool alias = false;  // RFC 5923
  bool keep = false;   // RFC 6223, present with or without a value
  std::optional<std::uint32_t> keep_value;

  std::optional<Param> param(std::string_view name) const noexcept { return find_header_param(params, name); }
  // RFC 3261 §8.1.1.7: a branch starting with the magic cookie comes from an RFC 3261 element.
  bool rfc3261_branch() const noexcept { return branch.size() > 7 && branch.substr(0, 7) == "z9hG4bK"; }
};
Error parse_via(std::string_view via_parm, Via& out) noexcept;

// The index-th Via value (0 = top) of m, with where it sits.
Error via_at(const Message& m, std::size_t index, Via& out, HeaderValue* where = nullptr) noexcept;
std::size_t via_count(const Message& m) noexcept;

// name-addr ([display-name] <uri>) or addr-spec, followed by header parameters. In the addr-spec
// form the parameters after the URI belong to the header (RFC 3261 §20.10).
struct NameAddr {
  std::string_view display_name;  // as received (quotes kept), empty when absent
  std::string_view uri;           // inside <>, or the bare addr-spec
  std::string_view params;        // header parameters, from their first ';' (or empty)
  bool angle_brackets = false;

  std::optional<Param> param(std::string_view name) const noexcept { return find_header_param(params, name); }
  std::string_view tag() const noexcept;  // "" when absent
};
Error parse_name_addr(std::string_view text, NameAddr& out) noexcept;

// From / To (single-valued; checked at parse time).
Error from_header(const Message& m, NameAddr& out) noexcept;
Error to_header(const Message& m, NameAddr& out) noexcept;
// The tag parameter of From / To, "" when absent or unparseable.
std::string_view from_tag(const Message& m) noexcept;
std::string_view to_tag(const Message& m) noexcept;

// Route, Record-Route and Path values: always name-addr with a SIP URI (RFC 3261 §20.30/34,
// RFC 3327). uri.lr(), uri.ob(), uri.transport() and uri.user carry what an edge needs.
struct RouteValue {
  NameAddr addr;
  Uri uri;
};
Error parse_route_value(std::string_view text, RouteValue& out) noexcept;
// The index-th value of Route / Record-Route / Path across all its header lines.
Error route_at(const Message& m, HeaderId id, std::size_t index, RouteValue& out,
               HeaderValue* where = nullptr) noexcept;

// Contact value (RFC 3261 §20.10, RFC 5626 §4.2): '*' or name-addr with params.
struct ContactValue {
  bool star = false;
  NameAddr addr;
  Uri uri;                              // valid when uri_is_sip
  bool uri_is_sip = false;              // a tel: or other scheme is legal in a Contact; the edge only looks
  std::string_view instance;            // +sip.instance value, quotes removed ("<urn:uuid:...>")
  std::optional<std::uint32_t> reg_id;  // 1 .. 2^31-1 (RFC 5626 §10)
  std::optional<std::uint32_t> expires;
  bool ob() const noexcept { return uri_is_sip && uri.ob(); }
};
Error parse_contact(std::string_view text, ContactValue& out) noexcept;

// Supported / Require / Proxy-Require / Unsupported: option tags, case-insensitive.
bool has_option_tag(const Message& m, HeaderId id, std::string_view tag) noexcept;

}  // namespace edge::sip
