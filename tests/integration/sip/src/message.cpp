// The harness's own small SIP parser, editor and stream framer (independent of net/sip).
#include "edge/test/sip/message.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace edge::test {
namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

struct NamePair {
  std::string_view lower;
  std::string_view canonical;
};

// Compact forms (RFC 3261 §7.3.3 and later RFCs) and the usual spelling of the
// headers an outbound test looks at; anything else keeps the caller's spelling.
// clang-format off
constexpr std::array kNames{
    NamePair{"a", "Accept-Contact"},    NamePair{"b", "Referred-By"},
    NamePair{"c", "Content-Type"},      NamePair{"d", "Request-Disposition"},
    NamePair{"e", "Content-Encoding"},  NamePair{"f", "From"},
    NamePair{"i", "Call-ID"},           NamePair{"j", "Reject-Contact"},
    NamePair{"k", "Supported"},         NamePair{"l", "Content-Length"},
    NamePair{"m", "Contact"},           NamePair{"n", "Identity-Info"},
    NamePair{"o", "Event"},             NamePair{"r", "Refer-To"},
    NamePair{"s", "Subject"},           NamePair{"t", "To"},
    NamePair{"u", "Allow-Events"},      NamePair{"v", "Via"},
    NamePair{"x", "Session-Expires"},   NamePair{"y", "Identity"},
    NamePair{"via", "Via"},             NamePair{"from", "From"},
    NamePair{"to", "To"},               NamePair{"call-id", "Call-ID"},
    NamePair{"cseq", "CSeq"},           NamePair{"contact", "Contact"},
    NamePair{"content-length", "Content-Length"}, NamePair{"content-type", "Content-Type"},
    NamePair{"max-forwards", "Max-Forwards"},     NamePair{"route", "Route"},
    NamePair{"record-route", "Record-Route"},     NamePair{"path", "Path"},
    NamePair{"supported", "Supported"},           NamePair{"require", "Require"},
    NamePair{"proxy-require", "Proxy-Require"},   NamePair{"unsupported", "Unsupported"},
    NamePair{"allow", "Allow"},                   NamePair{"expires", "Expires"},
    NamePair{"user-agent", "User-Agent"},         NamePair{"server", "Server"},
    NamePair{"flow-timer", "Flow-Timer"},         NamePair{"service-route", "Service-Route"},
    NamePair{"www-authenticate", "WWW-Authenticate"},
    NamePair{"authorization", "Authorization"},   NamePair{"warning", "Warning"},
    NamePair{"reason", "Reason"},                 NamePair{"retry-after", "Retry-After"},
    NamePair{"p-registrar-error", "P-Registrar-Error"},
};
// clang-format on

// Splits on ';' outside double quotes; the first element is what precedes the first ';'.
std::vector<std::string_view> split_params(std::string_view s) {
  std::vector<std::string_view> out;
  bool quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ';' && !quoted) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

std::optional<std::string> find_param(std::string_view params_with_lead, std::string_view name) {
  auto parts = split_params(params_with_lead);
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::string_view p = trim(parts[i]);
    std::size_t eq = p.find('=');
    std::string_view key = trim(p.substr(0, eq));
    if (iequals(key, name)) {
      return eq == std::string_view::npos ? std::string() : std::string(trim(p.substr(eq + 1)));
    }
  }
  return std::nullopt;
}

// Position of the first unquoted '<', or npos.
std::size_t find_open_angle(std::string_view s) {
  bool quoted = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (quoted && s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      quoted = !quoted;
    } else if (s[i] == '<' && !quoted) {
      return i;
    }
  }
  return std::string_view::npos;
}

std::string_view strip_scheme(std::string_view uri) {
  uri = trim(uri);
  if (uri.size() >= 4 && iequals(uri.substr(0, 4), "sip:")) return uri.substr(4);
  if (uri.size() >= 5 && iequals(uri.substr(0, 5), "sips:")) return uri.substr(5);
  return uri;
}

std::optional<std::size_t> parse_content_length(std::string_view value) {
  value = trim(value);
  std::size_t n = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
  return n;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string canonical_header_name(std::string_view name) {
  name = trim(name);
  std::string l(name);
  std::transform(l.begin(), l.end(), l.begin(), lower);
  for (const auto& n : kNames) {
    if (n.lower == l) return std::string(n.canonical);
  }
  return std::string(name);
}

// --- SipMessage ---------------------------------------------------------------

SipMessage SipMessage::parse(std::string_view text) {
  SipMessage m;
  m.raw_ = std::string(text);
  std::size_t header_end = text.find("\r\n\r\n");
  std::size_t body_start = header_end == std::string_view::npos ? std::string_view::npos : header_end + 4;
  if (header_end == std::string_view::npos) {
    header_end = text.find("\n\n");
    body_start = header_end == std::string_view::npos ? std::string_view::npos : header_end + 2;
  }
  std::string_view head = text.substr(0, header_end);
  if (body_start != std::string_view::npos) m.body_ = std::string(text.substr(body_start));

  bool first = true;
  while (!head.empty()) {
    std::size_t eol = head.find('\n');
    std::string_view line = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (first) {
      first = false;
      if (line.starts_with("SIP/2.0 ")) {
        std::string_view rest = line.substr(8);
        if (rest.size() < 3) throw ParseError("bad status line: " + std::string(line));
        auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + 3, m.status_);
        if (ec != std::errc() || ptr != rest.data() + 3 || m.status_ < 100 || m.status_ > 699 ||
            (rest.size() > 3 && rest[3] != ' ')) {
          throw ParseError("bad status code: " + std::string(line));
        }
        m.reason_ = std::string(trim(rest.substr(3)));
      } else {
        std::size_t sp1 = line.find(' ');
        std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
        if (sp2 == std::string_view::npos || line.substr(sp2 + 1) != "SIP/2.0" || sp1 == 0) {
          throw ParseError("bad start line: " + std::string(line));
        }
        m.method_ = std::string(line.substr(0, sp1));
        m.request_uri_ = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
      }
      continue;
    }
    if (line.empty()) continue;
    if (line.front() == ' ' || line.front() == '\t') {  // folded continuation (RFC 3261 §7.3.1)
      if (m.headers_.empty()) throw ParseError("continuation before any header");
      m.headers_.back().second += " " + std::string(trim(line));
      continue;
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || trim(line.substr(0, colon)).empty()) {
      throw ParseError("bad header line: " + std::string(line));
    }
    m.headers_.emplace_back(std::string(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
  }
  if (first) throw ParseError("empty message");

  // A datagram may carry bytes beyond Content-Length; they are not part of the message.
  if (auto cl = m.header("Content-Length")) {
    if (auto n = parse_content_length(*cl); n && *n < m.body_.size()) m.body_.resize(*n);
  }
  return m;
}

SipMessage SipMessage::request(std::string method, std::string request_uri) {
  SipMessage m;
  m.method_ = std::move(method);
  m.request_uri_ = std::move(request_uri);
  return m;
}

SipMessage SipMessage::response(int status, std::string reason) {
  SipMessage m;
  m.status_ = status;
  m.reason_ = std::move(reason);
  return m;
}

std::optional<std::string> SipMessage::header(std::string_view name) const {
  std::string want = canonical_header_name(name);
  for (const auto& [n, v] : headers_) {
    if (iequals(canonical_header_name(n), want)) return v;
  }
  return std::nullopt;
}

std::vector<std::string> SipMessage::header_values(std::string_view name) const {
  std::string want = canonical_header_name(name);
  std::vector<std::string> out;
  for (const auto& [n, v] : headers_) {
    if (!iequals(canonical_header_name(n), want)) continue;
    for (auto& e : split_header_list(v)) out.push_back(std::move(e));
  }
  return out;
}

bool SipMessage::has_token(std::string_view header_name, std::string_view token) const {
  for (const auto& v : header_values(header_name)) {
    if (iequals(trim(v), token)) return true;
  }
  return false;
}

SipMessage& SipMessage::add_header(std::string name, std::string value) {
  headers_.emplace_back(std::move(name), std::move(value));
  return *this;
}

SipMessage& SipMessage::prepend_header(std::string name, std::string value) {
  std::string want = canonical_header_name(name);
  auto it = std::find_if(headers_.begin(), headers_.end(),
                         [&](const Header& h) { return iequals(canonical_header_name(h.first), want); });
  headers_.emplace(it, std::move(name), std::move(value));
  return *this;
}

SipMessage& SipMessage::set_header(std::string name, std::string value) {
  std::string want = canonical_header_name(name);
  auto it = std::find_if(headers_.begin(), headers_.end(),
                         [&](const Header& h) { return iequals(canonical_header_name(h.first), want); });
  if (it == headers_.end()) {
    headers_.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  it->second = std::move(value);
  std::size_t keep = static_cast<std::size_t>(it - headers_.begin());
  for (std::size_t i = headers_.size(); i-- > keep + 1;) {
    if (iequals(canonical_header_name(headers_[i].first), want))
      headers_.erase(headers_.begin() + static_cast<long>(i));
  }
  return *this;
}

SipMessage& SipMessage::remove_header(std::string_view name) {
  std::string want = canonical_header_name(name);
  std::erase_if(headers_, [&](const Header& h) { return iequals(canonical_header_name(h.first), want); });
  return *this;
}

SipMessage& SipMessage::remove_first_value(std::string_view name) {
  std::string want = canonical_header_name(name);
  auto it = std::find_if(headers_.begin(), headers_.end(),
                         [&](const Header& h) { return iequals(canonical_header_name(h.first), want); });
  if (it == headers_.end()) return *this;
  auto values = split_header_list(it->second);
  if (values.size() <= 1) {
    headers_.erase(it);
    return *this;
  }
  std::string rest;
  for (std::size_t i = 1; i < values.size(); ++i) rest += (i > 1 ? ", " : "") + values[i];
  it->second = rest;
  return *this;
}

SipMessage& SipMessage::set_body(std::string body, std::string content_type) {
  body_ = std::move(body);
  if (body_.empty() || content_type.empty()) {
    remove_header("Content-Type");
  } else {
    set_header("Content-Type", std::move(content_type));
  }
  return *this;
}

std::string SipMessage::call_id() const {
  auto v = header("Call-ID");
  if (!v) throw ParseError("no Call-ID in " + summary());
  return *v;
}

std::uint32_t SipMessage::cseq_number() const {
  auto v = header("CSeq");
  if (!v) throw ParseError("no CSeq in " + summary());
  std::uint32_t n = 0;
  std::string_view s = trim(*v);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc()) throw ParseError("bad CSeq: " + *v);
  (void)ptr;
  return n;
}

std::string SipMessage::cseq_method() const {
  auto v = header("CSeq");
  if (!v) throw ParseError("no CSeq in " + summary());
  std::string_view s = trim(*v);
  std::size_t sp = s.find_first_of(" \t");
  if (sp == std::string_view::npos) throw ParseError("bad CSeq: " + *v);
  return std::string(trim(s.substr(sp + 1)));
}

std::string SipMessage::from_tag() const {
  auto v = header("From");
  if (!v) throw ParseError("no From in " + summary());
  return header_param(*v, "tag").value_or("");
}

std::optional<std::string> SipMessage::to_tag() const {
  auto v = header("To");
  if (!v) throw ParseError("no To in " + summary());
  return header_param(*v, "tag");
}

std::string SipMessage::top_via() const {
  auto v = header_values("Via");
  if (v.empty()) throw ParseError("no Via in " + summary());
  return v.front();
}

std::string SipMessage::to_string() const {
  std::string out;
  out.reserve(256 + body_.size());
  if (is_request()) {
    out += method_ + " " + request_uri_ + " SIP/2.0\r\n";
  } else {
    out += "SIP/2.0 " + std::to_string(status_) + " " + reason_ + "\r\n";
  }
  for (const auto& [n, v] : headers_) {
    if (iequals(canonical_header_name(n), "Content-Length")) continue;
    out += n + ": " + v + "\r\n";
  }
  out += "Content-Length: " + std::to_string(body_.size()) + "\r\n\r\n";
  out += body_;
  return out;
}

std::string SipMessage::summary() const {
  if (is_request()) return method_ + " " + request_uri_;
  std::string s = std::to_string(status_) + " " + reason_;
  if (auto c = header("CSeq")) s += " (" + *c + ")";
  return s;
}

// --- Header value pieces --------------------------------------------------------

std::vector<std::string> split_header_list(std::string_view value) {
  std::vector<std::string> out;
  bool quoted = false;
  int angle = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && c == '<') {
      ++angle;
    } else if (!quoted && c == '>' && angle > 0) {
      --angle;
    } else if (!quoted && angle == 0 && c == ',') {
      auto part = trim(value.substr(start, i - start));
      if (!part.empty()) out.emplace_back(part);
      start = i + 1;
    }
  }
  auto part = trim(value.substr(start));
  if (!part.empty()) out.emplace_back(part);
  return out;
}

std::string uri_of(std::string_view header_value) {
  std::size_t open = find_open_angle(header_value);
  if (open != std::string_view::npos) {
    std::size_t close = header_value.find('>', open);
    if (close == std::string_view::npos) return std::string(trim(header_value.substr(open + 1)));
    return std::string(header_value.substr(open + 1, close - open - 1));
  }
  return std::string(trim(header_value.substr(0, header_value.find(';'))));
}

std::optional<std::string> header_param(std::string_view header_value, std::string_view name) {
  std::size_t open = find_open_angle(header_value);
  std::string_view params = header_value;
  if (open != std::string_view::npos) {
    std::size_t close = header_value.find('>', open);
    if (close == std::string_view::npos) return std::nullopt;
    params = header_value.substr(close + 1);
  }
  return find_param(params, name);
}

std::optional<std::string> uri_param(std::string_view uri, std::string_view name) {
  std::string_view s = strip_scheme(uri);
  s = s.substr(0, s.find('?'));
  std::size_t at = s.find('@');
  if (at != std::string_view::npos) s = s.substr(at + 1);
  return find_param(s, name);
}

std::string uri_user(std::string_view uri) {
  std::string_view s = strip_scheme(uri);
  std::size_t at = s.find('@');
  if (at == std::string_view::npos) return {};
  std::string_view user = s.substr(0, at);
  return std::string(user.substr(0, user.find(':')));  // drop a password
}

std::string uri_host_port(std::string_view uri) {
  std::string_view s = strip_scheme(uri);
  std::size_t at = s.find('@');
  if (at != std::string_view::npos) s = s.substr(at + 1);
  return std::string(s.substr(0, s.find_first_of(";?>")));
}

// --- StreamFramer ----------------------------------------------------------------

void StreamFramer::feed(std::string_view bytes) { buffer_.append(bytes); }

void StreamFramer::skip_keepalives() {
  for (;;) {
    if (buffer_.starts_with("\r\n\r\n")) {
      ++pings_;
      buffer_.erase(0, 4);
    } else if (buffer_.starts_with("\r\n")) {
      ++pongs_;
      buffer_.erase(0, 2);
    } else {
      return;
    }
  }
}

std::optional<std::string> StreamFramer::next() {
  skip_keepalives();
  std::size_t end = buffer_.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  std::size_t length = 0;
  std::string_view head(buffer_.data(), end);
  while (!head.empty()) {
    std::size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(line.substr(0, colon));
    if (iequals(name, "Content-Length") || iequals(name, "l")) {
      length = parse_content_length(line.substr(colon + 1)).value_or(0);
    }
  }
  std::size_t total = end + 4 + length;
  if (buffer_.size() < total) return std::nullopt;
  std::string message = buffer_.substr(0, total);
  buffer_.erase(0, total);
  return message;
}

std::string make_sdp(std::string_view addr, std::uint16_t rtp_port, std::uint64_t session_id) {
  // The c= and o= lines want a bare address: no brackets around IPv6.
  std::string a(addr);
  if (a.size() > 2 && a.front() == '[') a = a.substr(1, a.size() - 2);
  const char* family = a.find(':') != std::string::npos ? "IP6" : "IP4";
  std::string id = std::to_string(session_id);
  return "v=0\r\n"
         "o=- " +
         id + " " + id + " IN " + family + " " + a +
         "\r\n"
         "s=-\r\n"
         "c=IN " +
         family + " " + a +
         "\r\n"
         "t=0 0\r\n"
         "m=audio " +
         std::to_string(rtp_port) +
         " RTP/AVP 0\r\n"
         "a=rtpmap:0 PCMU/8000\r\n"
         "a=sendrecv\r\n";
}

}  // namespace edge::test
