// SIP and SIPS URIs (RFC 3261 §19.1, RFC 5118 for IPv6 references), parsed into views.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "edge/net/sip/error.h"

namespace edge::sip {

// A parameter of a URI (";name=value") or of a header (";name=value" after a name-addr).
// Names compare case-insensitively; values are as received (URI values may be %-escaped,
// header values may be quoted strings including their quotes).
struct Param {
  std::string_view name;
  std::string_view value;
  bool has_value = false;
};

struct Uri {
  enum class Scheme : std::uint8_t { sip, sips };

  Scheme scheme = Scheme::sip;
  std::string_view user;      // may be empty; %-escapes kept
  std::string_view password;  // rarely used, kept for completeness
  bool has_user = false;      // "sip:@host" is invalid, but "sip:host" has no userinfo
  std::string_view host;      // IPv6 without the brackets
  bool host_is_ipv6 = false;
  std::optional<std::uint16_t> port;
  std::string_view params;   // ";lr;transport=tcp" incl. the first ';', or empty
  std::string_view headers;  // "?a=b&c=d" incl. the '?', or empty

  // Case-insensitive lookup in params.
  std::optional<Param> param(std::string_view name) const noexcept;
  bool has_param(std::string_view name) const noexcept { return param(name).has_value(); }
  // Value of the transport parameter, "" when absent.
  std::string_view transport() const noexcept;
  bool lr() const noexcept { return has_param("lr"); }
  bool ob() const noexcept { return has_param("ob"); }
};

// Parses "sip:user:password@host:port;params?headers". No white space is accepted: callers pass
// the text between < and > of a name-addr, or an addr-spec already cut at its parameters.
Error parse_uri(std::string_view text, Uri& out) noexcept;

// Iterates ";a=b;c" (URI style: no white space, no quoting) one parameter at a time.
class UriParamReader {
 public:
  explicit UriParamReader(std::string_view params) noexcept : s_(params) {}
  bool next(Param& p) noexcept;

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

// RFC 3261 §25.1 hostname / IPv4address, and IPv6 address text (no brackets).
bool is_valid_hostname(std::string_view host) noexcept;
bool is_valid_ipv6(std::string_view text) noexcept;

}  // namespace edge::sip
