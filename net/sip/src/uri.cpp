// SIP URI parsing: scheme, userinfo, host (name, IPv4, [IPv6]), port, parameters, headers.
#include "edge/net/sip/uri.h"

#include <arpa/inet.h>

#include <cstring>

#include "lex.h"

namespace edge::sip {
namespace {

// unreserved (alphanum / mark) and the '%' of an escape: allowed in every URI part we check.
bool is_unreserved_or_escape(char c) noexcept {
  if (lex::is_alnum(c)) return true;
  switch (c) {
    case '-':
    case '_':
    case '.':
    case '!':
    case '~':
    case '*':
    case '\'':
    case '(':
    case ')':
    case '%':
      return true;
    default:
      return false;
  }
}

// user-unreserved / password chars: what else may appear before '@'.
bool is_userinfo_char(char c) noexcept {
  if (is_unreserved_or_escape(c)) return true;
  switch (c) {
    case '&':
    case '=':
    case '+':
    case '$':
    case ',':
    case ';':
    case '?':
    case '/':
    case ':':
      return true;
    default:
      return false;
  }
}

// param-unreserved / hnv-unreserved: what else may appear in uri-parameters and headers.
bool is_param_char(char c) noexcept {
  if (is_unreserved_or_escape(c)) return true;
  switch (c) {
    case '[':
    case ']':
    case '/':
    case ':':
    case '&':
    case '+':
    case '$':
    case '?':
    case '=':
    case ';':
      return true;
    default:
      return false;
  }
}

bool valid_escapes(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') continue;
    if (i + 2 >= s.size()) return false;
    if (!lex::is_hex(s[i + 1]) || !lex::is_hex(s[i + 2])) return false;
    i += 2;
  }
  return true;
}

}  // namespace

bool is_valid_ipv6(std::string_view text) noexcept {
  // inet_pton wants a NUL-terminated string; the longest IPv6 text is 45 characters.
  if (text.empty() || text.size() > 45) return false;
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in6_addr a{};
  return inet_pton(AF_INET6, buf, &a) == 1;
}

bool is_valid_hostname(std::string_view host) noexcept {
  // hostname = *( domainlabel "." ) toplabel [ "." ]; IPv4address is a special case of it
  // lexically, so one scan accepts both.
  if (host.empty() || host.size() > 253 + 1) return false;
  std::size_t label = 0;
  char prev = '.';
  for (char c : host) {
    if (c == '.') {
      if (prev == '.' || prev == '-') return false;
      label = 0;
    } else if (lex::is_alnum(c)) {
      if (++label > 63) return false;
    } else if (c == '-') {
      if (prev == '.') return false;
      ++label;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

bool UriParamReader::next(Param& p) noexcept {
  while (pos_ < s_.size()) {
    if (s_[pos_] == ';') {
      ++pos_;
      continue;
    }
    std::size_t end = s_.find(';', pos_);
    if (end == std::string_view::npos) end = s_.size();
    std::string_view item = s_.substr(pos_, end - pos_);
    pos_ = end;
    std::size_t eq = item.find('=');
    p.name = item.substr(0, eq);
    p.has_value = eq != std::string_view::npos;
    p.value = p.has_value ? item.substr(eq + 1) : std::string_view{};
    return true;
  }
  return false;
}

std::optional<Param> Uri::param(std::string_view name) const noexcept {
  UriParamReader r(params);
  Param p;
  while (r.next(p))
    if (lex::ieq(p.name, name)) return p;
  return std::nullopt;
}

std::string_view Uri::transport() const noexcept {
  auto p = param("transport");
  return p ? p->value : std::string_view{};
}

Error parse_uri(std::string_view s, Uri& u) noexcept {
  u = Uri{};
  std::size_t colon = s.find(':');
  if (colon == std::string_view::npos) return Error::bad_uri;
  std::string_view scheme = s.substr(0, colon);
  if (lex::ieq(scheme, "sip")) {
    u.scheme = Uri::Scheme::sip;
  } else if (lex::ieq(scheme, "sips")) {
    u.scheme = Uri::Scheme::sips;
  } else {
    return lex::all_token(scheme) ? Error::unsupported_scheme : Error::bad_uri;
  }
  std::string_view rest = s.substr(colon + 1);

  // userinfo ends at the only '@'; user-unreserved allows ';' and '?', so look for '@' first.
  std::size_t at = rest.find('@');
  if (at != std::string_view::npos) {
    if (rest.find('@', at + 1) != std::string_view::npos) return Error::bad_uri;
    std::string_view userinfo = rest.substr(0, at);
    for (char c : userinfo)
      if (!is_userinfo_char(c)) return Error::bad_uri;
    if (!valid_escapes(userinfo)) return Error::bad_uri;
    std::size_t pw = userinfo.find(':');
    u.user = userinfo.substr(0, pw);
    if (pw != std::string_view::npos) u.password = userinfo.substr(pw + 1);
    if (u.user.empty()) return Error::bad_uri;
    u.has_user = true;
    rest = rest.substr(at + 1);
  }

  // hostport
  std::size_t i = 0;
  if (!rest.empty() && rest[0] == '[') {
    std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return Error::bad_uri;
    u.host = rest.substr(1, close - 1);
    if (!is_valid_ipv6(u.host)) return Error::bad_uri;
    u.host_is_ipv6 = true;
    i = close + 1;
  } else {
    while (i < rest.size() && rest[i] != ':' && rest[i] != ';' && rest[i] != '?') ++i;
    u.host = rest.substr(0, i);
    if (!is_valid_hostname(u.host)) return Error::bad_uri;
  }
  if (i < rest.size() && rest[i] == ':') {
    std::size_t b = ++i;
    while (i < rest.size() && lex::is_digit(rest[i])) ++i;
    std::uint32_t port = 0;
    if (!lex::parse_uint(rest.substr(b, i - b), 65535, port)) return Error::bad_uri;
    u.port = static_cast<std::uint16_t>(port);
  }
  if (i < rest.size() && rest[i] != ';' && rest[i] != '?') return Error::bad_uri;

  std::size_t q = rest.find('?', i);
  std::string_view params = rest.substr(i, q == std::string_view::npos ? std::string_view::npos : q - i);
  for (char c : params)
    if (!is_param_char(c) || c == '?') return Error::bad_uri;
  if (!valid_escapes(params)) return Error::bad_uri;
  UriParamReader r(params);
  Param p;
  while (r.next(p))
    if (p.name.empty()) return Error::bad_uri;
  u.params = params;
  if (q != std::string_view::npos) {
    u.headers = rest.substr(q);
    for (char c : u.headers.substr(1))
      if (!is_param_char(c) || c == ';') return Error::bad_uri;
    if (!valid_escapes(u.headers)) return Error::bad_uri;
  }
  return Error::ok;
}

}  // namespace edge::sip
