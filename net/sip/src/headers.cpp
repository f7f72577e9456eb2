// Lazy structured accessors: Via, name-addr, Route/Record-Route/Path, Contact, option tags.
#include "edge/net/sip/headers.h"

#include "lex.h"

namespace edge::sip {

ValueIterator::ValueIterator(const Message& m, HeaderId id) noexcept : m_(&m), id_(id) {}

bool ValueIterator::load_line() noexcept {
  auto hs = m_->headers();
  while (header_ < hs.size()) {
    const Header& h = hs[header_++];
    if (h.id == id_) {
      rest_ = h.value;
      current_ = header_ - 1;
      in_line_ = 0;
      return true;
    }
  }
  return false;
}

bool ValueIterator::next(HeaderValue& out) noexcept {
  if (error_) return false;
  for (;;) {
    std::string_view item;
    if (lex::split_next(rest_, item, error_)) {
      out.text = item;
      out.header_index = current_;
      out.index_in_line = in_line_++;
      return true;
    }
    if (error_ || !load_line()) return false;
  }
}

namespace {

// gen-value = token / host / quoted-string; host may be an IPv6 reference.
bool is_gen_value_char(char c) noexcept { return lex::is_token(c) || c == '[' || c == ']' || c == ':'; }

}  // namespace

bool HeaderParamReader::next(Param& p) noexcept {
  if (error_) return false;
  pos_ = lex::skip_lws(s_, pos_);
  if (pos_ >= s_.size()) return false;
  if (s_[pos_] != ';') return error_ = true, false;
  pos_ = lex::skip_lws(s_, pos_ + 1);
  std::size_t b = pos_;
  while (pos_ < s_.size() && lex::is_token(s_[pos_])) ++pos_;
  if (pos_ == b) return error_ = true, false;
  p.name = s_.substr(b, pos_ - b);
  p.value = {};
  p.has_value = false;
  std::size_t i = lex::skip_lws(s_, pos_);
  if (i < s_.size() && s_[i] == '=') {
    i = lex::skip_lws(s_, i + 1);
    b = i;
    if (i < s_.size() && s_[i] == '"') {
      i = lex::skip_quoted(s_, i);
      if (i == std::string_view::npos) return error_ = true, false;
    } else {
      while (i < s_.size() && is_gen_value_char(s_[i])) ++i;
      if (i == b) return error_ = true, false;
    }
    p.value = s_.substr(b, i - b);
    p.has_value = true;
    pos_ = i;
  }
  return true;
}

std::optional<Param> find_header_param(std::string_view params, std::string_view name) noexcept {
  HeaderParamReader r(params);
  Param p;
  while (r.next(p))
    if (lex::ieq(p.name, name)) return p;
  return std::nullopt;
}

std::string_view unquote(std::string_view v) noexcept {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

namespace {

// SWS "/" SWS between the parts of sent-protocol.
bool take_slash(std::string_view s, std::size_t& i) noexcept {
  i = lex::skip_lws(s, i);
  if (i >= s.size() || s[i] != '/') return false;
  i = lex::skip_lws(s, i + 1);
  return true;
}

std::string_view take_token(std::string_view s, std::size_t& i) noexcept {
  std::size_t b = i;
  while (i < s.size() && lex::is_token(s[i])) ++i;
  return s.substr(b, i - b);
}

bool valid_address(std::string_view v) noexcept {
  if (v.size() > 2 && v.front() == '[' && v.back() == ']') return is_valid_ipv6(v.substr(1, v.size() - 2));
  return is_valid_ipv6(v) || is_valid_hostname(v);
}

}  // namespace

Error parse_via(std::string_view text, Via& v) noexcept {
  v = Via{};
  std::string_view s = lex::trim(text);
  v.text = s;
  std::size_t i = 0;
  v.protocol_name = take_token(s, i);
  if (v.protocol_name.empty() || !take_slash(s, i)) return Error::bad_via;
  v.protocol_version = take_token(s, i);
  if (v.protocol_version.empty() || !take_slash(s, i)) return Error::bad_via;
  v.transport = take_token(s, i);
  if (v.transport.empty()) return Error::bad_via;
  std::size_t j = lex::skip_lws(s, i);
  if (j == i || j >= s.size()) return Error::bad_via;
  i = j;

  const std::size_t sent_by_begin = i;
  if (s[i] == '[') {
    std::size_t close = s.find(']', i);
    if (close == std::string_view::npos) return Error::bad_via;
    v.host = s.substr(i + 1, close - i - 1);
    if (!is_valid_ipv6(v.host)) return Error::bad_via;
    v.host_is_ipv6 = true;
    i = close + 1;
  } else {
    std::size_t b = i;
    while (i < s.size() && (lex::is_alnum(s[i]) || s[i] == '-' || s[i] == '.')) ++i;
    v.host = s.substr(b, i - b);
    if (!is_valid_hostname(v.host)) return Error::bad_via;
  }
  std::size_t sent_by_end = i;
  j = lex::skip_lws(s, i);
  if (j < s.size() && s[j] == ':') {
    i = lex::skip_lws(s, j + 1);
    std::size_t b = i;
    while (i < s.size() && lex::is_digit(s[i])) ++i;
    std::uint32_t port = 0;
    if (!lex::parse_uint(s.substr(b, i - b), 65535, port)) return Error::bad_via;
    v.port = static_cast<std::uint16_t>(port);
    sent_by_end = i;
    j = lex::skip_lws(s, i);
  }
  v.sent_by = s.substr(sent_by_begin, sent_by_end - sent_by_begin);
  if (j < s.size() && s[j] != ';') return Error::bad_via;
  v.params = s.substr(j);

  HeaderParamReader r(v.params);
  Param p;
  while (r.next(p)) {
    std::uint32_t n = 0;
    if (lex::ieq(p.name, "branch")) {
      if (!p.has_value || !lex::all_token(p.value)) return Error::bad_via;
      v.branch = p.value;
    } else if (lex::ieq(p.name, "received")) {
      if (!p.has_value || !valid_address(p.value)) return Error::bad_via;
      v.received = p.value;
    } else if (lex::ieq(p.name, "maddr")) {
      if (!p.has_value || !valid_address(p.value)) return Error::bad_via;
      v.maddr = p.value;
    } else if (lex::ieq(p.name, "ttl")) {
      if (!p.has_value || !lex::parse_uint(p.value, 255, n)) return Error::bad_via;
      v.ttl = static_cast<std::uint8_t>(n);
    } else if (lex::ieq(p.name, "rport")) {
      v.rport = true;
      if (p.has_value) {
        if (!lex::parse_uint(p.value, 65535, n)) return Error::bad_via;
        v.rport_value = static_cast<std::uint16_t>(n);
      }
    } else if (lex::ieq(p.name, "alias")) {
      v.alias = true;
    } else if (lex::ieq(p.name, "keep")) {
      v.keep = true;
      if (p.has_value) {
        if (!lex::parse_uint(p.value, 0xffffffffu, n)) return Error::bad_via;
        v.keep_value = n;
      }
    }
  }
  return r.error() ? Error::bad_via : Error::ok;
}

Error via_at(const Message& m, std::size_t index, Via& out, HeaderValue* where) noexcept {
  ValueIterator it(m, HeaderId::via);
  HeaderValue hv;
  for (std::size_t k = 0; it.next(hv); ++k) {
    if (k == index) {
      if (where) *where = hv;
      return parse_via(hv.text, out);
    }
  }
  return it.error() ? Error::bad_via : Error::no_such_header;
}

std::size_t via_count(const Message& m) noexcept {
  ValueIterator it(m, HeaderId::via);
  HeaderValue hv;
  std::size_t n = 0;
  while (it.next(hv)) ++n;
  return n;
}

std::string_view NameAddr::tag() const noexcept {
  auto p = param("tag");
  return p ? p->value : std::string_view{};
}

Error parse_name_addr(std::string_view text, NameAddr& out) noexcept {
  out = NameAddr{};
  std::string_view s = lex::trim(text);
  if (s.empty()) return Error::bad_name_addr;
  std::size_t i = 0;
  bool angle = false;
  if (s[0] == '"') {
    i = lex::skip_quoted(s, 0);
    if (i == std::string_view::npos) return Error::bad_name_addr;
    out.display_name = s.substr(0, i);
    i = lex::skip_lws(s, i);
    if (i >= s.size() || s[i] != '<') return Error::bad_name_addr;
    angle = true;
  } else {
    // display-name = *(token LWS); a '<' after it means name-addr, anything else addr-spec.
    while (i < s.size() && (lex::is_token(s[i]) || lex::is_lws(s[i]))) ++i;
    if (i < s.size() && s[i] == '<') {
      angle = true;
      out.display_name = lex::trim(s.substr(0, i));
    } else {
      i = 0;
    }
  }
  std::size_t after = 0;
  if (angle) {
    std::size_t close = s.find('>', i + 1);
    if (close == std::string_view::npos) return Error::bad_name_addr;
    out.uri = s.substr(i + 1, close - i - 1);
    after = close + 1;
  } else {
    std::size_t semi = s.find(';');
    out.uri = lex::trim(s.substr(0, semi));
    after = semi == std::string_view::npos ? s.size() : semi;
  }
  out.angle_brackets = angle;
  if (out.uri.empty() || out.uri.find(':') == std::string_view::npos) return Error::bad_name_addr;
  for (char c : out.uri)
    if (lex::is_lws(c) || c == '<' || c == '>' || c == '"') return Error::bad_name_addr;
  std::size_t p = lex::skip_lws(s, after);
  out.params = s.substr(p);
  if (!out.params.empty() && out.params[0] != ';') return Error::bad_name_addr;
  HeaderParamReader r(out.params);
  Param prm;
  while (r.next(prm)) {
  }
  return r.error() ? Error::bad_param : Error::ok;
}

namespace {
Error single_name_addr(const Message& m, HeaderId id, NameAddr& out) noexcept {
  const Header* h = m.first(id);
  if (!h) return Error::no_such_header;
  return parse_name_addr(h->value, out);
}
}  // namespace

Error from_header(const Message& m, NameAddr& out) noexcept {
  return single_name_addr(m, HeaderId::from, out);
}
Error to_header(const Message& m, NameAddr& out) noexcept { return single_name_addr(m, HeaderId::to, out); }

std::string_view from_tag(const Message& m) noexcept {
  NameAddr na;
  return from_header(m, na) == Error::ok ? na.tag() : std::string_view{};
}

std::string_view to_tag(const Message& m) noexcept {
  NameAddr na;
  return to_header(m, na) == Error::ok ? na.tag() : std::string_view{};
}

Error parse_route_value(std::string_view text, RouteValue& out) noexcept {
  out = RouteValue{};
  if (Error e = parse_name_addr(text, out.addr); e != Error::ok) return e;
  // route-param = name-addr: without <> the ";lr" would be a header parameter, not the URI's.
  if (!out.addr.angle_brackets) return Error::bad_name_addr;
  return parse_uri(out.addr.uri, out.uri);
}

Error route_at(const Message& m, HeaderId id, std::size_t index, RouteValue& out,
               HeaderValue* where) noexcept {
  ValueIterator it(m, id);
  HeaderValue hv;
  for (std::size_t k = 0; it.next(hv); ++k) {
    if (k == index) {
      if (where) *where = hv;
      return parse_route_value(hv.text, out);
    }
  }
  return it.error() ? Error::bad_name_addr : Error::no_such_header;
}

Error parse_contact(std::string_view text, ContactValue& out) noexcept {
  out = ContactValue{};
  if (lex::trim(text) == "*") {
    out.star = true;
    return Error::ok;
  }
  if (Error e = parse_name_addr(text, out.addr); e != Error::ok) return e;
  Error ue = parse_uri(out.addr.uri, out.uri);
  if (ue == Error::ok)
    out.uri_is_sip = true;
  else if (ue != Error::unsupported_scheme)
    return ue;
  HeaderParamReader r(out.addr.params);
  Param p;
  while (r.next(p)) {
    std::uint32_t n = 0;
    if (lex::ieq(p.name, "+sip.instance")) {
      if (!p.has_value) return Error::bad_contact;
      out.instance = unquote(p.value);
    } else if (lex::ieq(p.name, "reg-id")) {
      // RFC 5626 §10: reg-id = 1 to (2^31 - 1)
      if (!p.has_value || !lex::parse_uint(p.value, 0x7fffffffu, n) || n == 0) return Error::bad_contact;
      out.reg_id = n;
    } else if (lex::ieq(p.name, "expires")) {
      if (!p.has_value || !lex::parse_uint(p.value, 0xffffffffu, n)) return Error::bad_contact;
      out.expires = n;
    }
  }
  return Error::ok;
}

bool has_option_tag(const Message& m, HeaderId id, std::string_view tag) noexcept {
  ValueIterator it(m, id);
  HeaderValue hv;
  while (it.next(hv))
    if (lex::ieq(hv.text, tag)) return true;
  return false;
}

}  // namespace edge::sip
