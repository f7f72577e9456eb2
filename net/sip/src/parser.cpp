// The SIP message parser (RFC 3261 §7, §25) and the stream framer: one pass, views only.
#include <algorithm>
#include <array>
#include <cstring>

#include "edge/net/sip/message.h"
#include "edge/net/sip/utf8.h"
#include "lex.h"

namespace edge::sip {
namespace {

enum : std::uint8_t { kPlain = 0, kCR = 1, kLF = 2, kCtl = 3, kHigh = 4 };

// Printable ASCII and HT are plain; the rest needs a closer look.
constexpr std::array<std::uint8_t, 256> kByteClass = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    std::uint8_t k = kPlain;
    if (c == '\r')
      k = kCR;
    else if (c == '\n')
      k = kLF;
    else if (c == '\t')
      k = kPlain;
    else if (c < 0x20 || c == 0x7f)
      k = kCtl;
    else if (c >= 0x80)
      k = kHigh;
    t[static_cast<std::size_t>(c)] = k;
  }
  return t;
}();

// Length of the well-formed UTF-8 sequence at p (RFC 3629 table: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0.
std::size_t utf8_sequence(const unsigned char* p, const unsigned char* end) noexcept {
  const unsigned char c = p[0];
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (static_cast<std::size_t>(end - p) < len) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if (p[k] < 0x80 || p[k] > 0xbf) return 0;
  return len;
}

// Scans from i to the next CRLF, validating every byte; eol receives the index of the CR.
Error scan_line(std::string_view buf, std::size_t i, std::size_t& eol) noexcept {
  const auto* base = reinterpret_cast<const unsigned char*>(buf.data());
  const auto* p = base + i;
  const auto* end = base + buf.size();
  for (;;) {
    // Unrolled: most header bytes are plain ASCII.
    while (end - p >= 4 && kByteClass[p[0]] == kPlain && kByteClass[p[1]] == kPlain &&
           kByteClass[p[2]] == kPlain && kByteClass[p[3]] == kPlain)
      p += 4;
    if (p >= end) return Error::headers_incomplete;
    switch (kByteClass[*p]) {
      case kPlain:
        ++p;
        break;
      case kCR:
        if (p + 1 >= end) return Error::headers_incomplete;
        if (p[1] != '\n') return Error::bad_line_ending;
        eol = static_cast<std::size_t>(p - base);
        return Error::ok;
      case kLF:
        return Error::bad_line_ending;
      case kCtl:
        // A quoted-pair escapes any control but CR and LF (RFC 3261 §25.1, RFC 4475
        // intmeth): opaque to the edge, passed on as it came.
        if (p > base + i && p[-1] == '\\') {
          ++p;
          break;
        }
        return Error::control_character;
      default:
        // Octets above 0x7f are text the edge never decodes (display names, reason
        // phrases, unknown headers: UTF-8, or Latin-1 from older phones): passed on as
        // they came. Where the edge does read (URIs, Via, tokens) the structured parsers
        // refuse them by their own grammar; a WebSocket peer gets a message that is not
        // UTF-8 in a binary frame (RFC 7118 §4.2, ws_connection.cpp).
        ++p;
    }
  }
}

bool is_sip_version(std::string_view v) noexcept { return lex::ieq(v, "SIP/2.0"); }

// RFC 3261 §19.1.1 absoluteURI needs a scheme; the Request-URI has no SP and no controls.
bool valid_request_uri(std::string_view uri) noexcept {
  if (uri.empty() || !lex::is_alpha(uri[0])) return false;
  std::size_t colon = std::string_view::npos;
  for (std::size_t i = 0; i < uri.size(); ++i) {
    auto c = static_cast<unsigned char>(uri[i]);
    if (c <= 0x20 || c >= 0x7f) return false;
    if (colon == std::string_view::npos) {
      if (c == ':')
        colon = i;
      else if (!lex::is_alnum(uri[i]) && c != '+' && c != '-' && c != '.')
        return false;
    }
  }
  return colon != std::string_view::npos && colon + 1 < uri.size();
}

}  // namespace

class Parser {
 public:
  static Error run(std::string_view in, Message& m, const ParseOptions& o);
  static Error salvage(std::string_view in, Message& m, const Limits& lim);

 private:
  static Error start_line(std::string_view line, Message& m);
  static Error single_valued(Message& m, Header& h);
};

Error Parser::start_line(std::string_view line, Message& m) {
  m.start_line_ = line;
  if (line.size() >= 4 && lex::ieq(line.substr(0, 4), "SIP/")) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return Error::bad_start_line;
    if (!is_sip_version(line.substr(0, sp))) return Error::bad_version;
    std::string_view rest = line.substr(sp + 1);
    if (rest.size() < 3 || !lex::is_digit(rest[0]) || !lex::is_digit(rest[1]) || !lex::is_digit(rest[2]))
      return Error::bad_status_code;
    // Lenient on one point: "SIP/2.0 200" without the SP before an empty reason is common.
    if (rest.size() > 3 && rest[3] != ' ') return Error::bad_status_code;
    int code = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
    if (code < 100 || code > 699) return Error::bad_status_code;
    m.status_ = code;
    m.reason_ = rest.size() > 4 ? rest.substr(4) : rest.substr(rest.size());
    return Error::ok;
  }
  // Request-Line = Method SP Request-URI SP SIP-Version
  std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return Error::bad_start_line;
  std::string_view method = line.substr(0, sp1);
  if (!lex::all_token(method)) return Error::bad_method;
  std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return Error::bad_start_line;
  std::string_view uri = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!valid_request_uri(uri)) return Error::bad_request_uri;
  if (!is_sip_version(version)) {
    // "SIP/2.0 " with trailing white space (RFC 4475 trws) is a malformed line, not another version.
    if (is_sip_version(lex::trim(version))) return Error::bad_start_line;
    return version.size() >= 4 && lex::ieq(version.substr(0, 4), "SIP/") ? Error::bad_version
                                                                         : Error::bad_start_line;
  }
  m.method_name_ = method;
  m.method_ = method_from_name(method);
  m.request_uri_ = uri;
  return Error::ok;
}

Error Parser::single_valued(Message& m, Header& h) {
  std::uint32_t v = 0;
  switch (h.id) {
    case HeaderId::content_length:
      if (!lex::parse_uint(h.value, 0xffffffffu, v)) return Error::bad_content_length;
      m.content_length_ = v;
      return Error::ok;
    case HeaderId::max_forwards:
      // RFC 3261 §20.22: an integer 0-255.
      if (!lex::parse_uint(h.value, 255, v)) return Error::bad_max_forwards;
      m.max_forwards_ = v;
      return Error::ok;
    case HeaderId::flow_timer:
      if (!lex::parse_uint(h.value, 0xffffffffu, v)) return Error::bad_flow_timer;
      m.flow_timer_ = v;
      return Error::ok;
    case HeaderId::call_id: {
      // callid = word [ "@" word ]: printable, no white space.
      if (h.value.empty()) return Error::bad_call_id;
      for (char c : h.value) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return Error::bad_call_id;
      }
      m.call_id_ = h.value;
      return Error::ok;
    }
    case HeaderId::cseq: {
      // CSeq = 1*DIGIT LWS Method; the number is below 2**31 (RFC 3261 §8.1.1.5).
      std::string_view s = h.value;
      std::size_t i = 0;
      while (i < s.size() && lex::is_digit(s[i])) ++i;
      std::size_t j = lex::skip_lws(s, i);
      if (i == 0 || j == i || j >= s.size()) return Error::bad_cseq;
      if (!lex::parse_uint(s.substr(0, i), 0x7fffffffu, v)) return Error::bad_cseq;
      std::string_view method = s.substr(j);
      if (!lex::all_token(method)) return Error::bad_cseq;
      m.cseq_ = CSeq{v, method};
      return Error::ok;
    }
    default:
      return Error::ok;
  }
}

Error Parser::run(std::string_view in, Message& m, const ParseOptions& o) {
  m.reset();
  const Limits& lim = o.limits;
  // RFC 3261 §7.5: CRLFs before the start line are ignored.
  std::size_t skip = 0;
  while (skip + 1 < in.size() && in[skip] == '\r' && in[skip + 1] == '\n') skip += 2;
  std::string_view buf = in.substr(skip);
  if (buf.empty()) return Error::empty_message;
  // Offsets are stored in 32 bits: a limit configured above 4 GiB still stops there.
  if (buf.size() > lim.max_message_size || buf.size() > 0xffffffffu) return Error::message_too_large;
  m.raw_ = buf;
  const std::size_t n = buf.size();

  std::size_t eol = 0;
  Error e = scan_line(buf, 0, eol);
  if (e == Error::headers_incomplete) return Error::bad_start_line;
  if (e != Error::ok) return e;
  if (eol > lim.max_header_line) return Error::header_line_too_long;
  if ((e = start_line(buf.substr(0, eol), m)) != Error::ok) return e;

  std::size_t pos = eol + 2;
  for (;;) {
    if (pos >= n) return Error::headers_incomplete;
    const char c = buf[pos];
    if (c == '\r') {
      if (pos + 1 >= n) return Error::headers_incomplete;
      if (buf[pos + 1] != '\n') return Error::bad_line_ending;
      m.headers_end_ = pos;
      pos += 2;
      break;
    }
    if (c == '\n') return Error::bad_line_ending;
    if (lex::is_wsp(c)) return Error::bad_folding;
    const std::size_t line_begin = pos;
    std::size_t name_end = pos;
    while (name_end < n && lex::is_token(buf[name_end])) ++name_end;
    if (name_end == pos) return Error::bad_header_name;
    std::size_t i = name_end;
    while (i < n && lex::is_wsp(buf[i])) ++i;
    if (i >= n) return Error::headers_incomplete;
    if (buf[i] != ':')
      return (i != name_end || buf[i] == '\r') ? Error::missing_colon : Error::bad_header_name;
    const std::size_t value_begin = ++i;
    for (;;) {
      if ((e = scan_line(buf, i, eol)) != Error::ok) return e;
      if (eol - line_begin > lim.max_header_line) return Error::header_line_too_long;
      // A line starting with SP/HT continues this header (RFC 3261 §7.3.1 folding).
      if (eol + 2 < n && lex::is_wsp(buf[eol + 2])) {
        i = eol + 3;
        continue;
      }
      break;
    }
    if (m.header_count_ >= lim.max_headers) return Error::too_many_headers;
    Header& h = m.add_slot();
    h.name = buf.substr(line_begin, name_end - line_begin);
    h.value = lex::trim(buf.substr(value_begin, eol - value_begin));
    h.line_begin = static_cast<std::uint32_t>(line_begin);
    h.line_end = static_cast<std::uint32_t>(eol + 2);
    h.id = header_id(h.name);
    pos = eol + 2;

    auto& first = m.first_[static_cast<std::size_t>(h.id)];
    if (first == 0) {
      first = static_cast<std::uint32_t>(m.header_count_);
      if (is_single_valued(h.id) && (e = single_valued(m, h)) != Error::ok) return e;
    } else if (is_single_valued(h.id)) {
      if (h.id == HeaderId::content_length) {
        std::uint32_t v = 0;
        if (!lex::parse_uint(h.value, 0xffffffffu, v)) return Error::bad_content_length;
        return v == *m.content_length_ ? Error::duplicate_header : Error::conflicting_content_length;
      }
      return Error::duplicate_header;
    }
  }

  // RFC 3261 §8.1.1: the headers every request and response carries.
  for (HeaderId id : {HeaderId::via, HeaderId::from, HeaderId::to, HeaderId::call_id, HeaderId::cseq})
    if (m.first_[static_cast<std::size_t>(id)] == 0) return Error::missing_header;
  if (m.is_request() && m.cseq_.method != m.method_name_) return Error::cseq_method_mismatch;

  if (m.content_length_) {
    const std::size_t cl = *m.content_length_;
    if (cl > lim.max_message_size || pos + cl > lim.max_message_size) return Error::content_length_too_large;
    if (n - pos < cl) return Error::body_truncated;
    m.body_ = buf.substr(pos, cl);
    m.raw_ = buf.substr(0, pos + cl);
  } else {
    if (o.stream) return Error::missing_content_length;
    m.body_ = buf.substr(pos);
  }
  return Error::ok;
}

Error parse(std::string_view bytes, Message& out, const ParseOptions& options) {
  return Parser::run(bytes, out, options);
}

namespace {
// A logical header line [begin, end) (continuations included, final CRLF excluded) is fit to copy
// into a response: no control character other than HT and the CRLF of a continuation.
bool copyable_line(std::string_view line) noexcept {
  for (std::size_t i = 0; i < line.size(); ++i) {
    const auto u = static_cast<unsigned char>(line[i]);
    if (u == '\r' && i + 2 < line.size() && line[i + 1] == '\n' && lex::is_wsp(line[i + 2])) {
      ++i;
      continue;
    }
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}
}  // namespace

Error Parser::salvage(std::string_view in, Message& m, const Limits& lim) {
  m.reset();
  std::size_t skip = 0;
  while (skip + 1 < in.size() && in[skip] == '\r' && in[skip + 1] == '\n') skip += 2;
  std::string_view buf = in.substr(skip);
  if (buf.empty()) return Error::empty_message;
  if (buf.size() > 0xffffffffu) buf = buf.substr(0, 0xffffffffu);  // offsets are 32 bits
  if (buf.size() >= 4 && lex::ieq(buf.substr(0, 4), "SIP/")) return Error::not_a_request;
  m.raw_ = buf;
  const std::size_t n = buf.size();
  std::size_t eol = buf.find("\r\n");
  if (eol == std::string_view::npos) eol = n;
  m.start_line_ = buf.substr(0, eol);
  // The method is the start line's first word when that is a token (RFC 3261 §25.1), else the CSeq's.
  const std::string_view word = m.start_line_.substr(0, m.start_line_.find(' '));
  if (!word.empty() && word.size() <= lim.max_header_line && lex::all_token(word)) m.method_name_ = word;

  std::size_t pos = eol + 2;
  while (pos < n) {
    std::size_t end = buf.find("\r\n", pos);
    if (end == std::string_view::npos) break;  // an unterminated last line is not copied
    if (end == pos) {                          // the empty line: end of the header section
      m.headers_end_ = pos;
      break;
    }
    // The value runs over continuation lines (RFC 3261 §7.3.1).
    while (end + 2 < n && lex::is_wsp(buf[end + 2])) {
      const std::size_t next = buf.find("\r\n", end + 2);
      if (next == std::string_view::npos) break;
      end = next;
    }
    const std::size_t line_begin = pos;
    pos = end + 2;
    std::size_t name_end = line_begin;
    while (name_end < end && lex::is_token(buf[name_end])) ++name_end;
    std::size_t colon = name_end;
    while (colon < end && lex::is_wsp(buf[colon])) ++colon;
    if (name_end == line_begin || colon >= end || buf[colon] != ':') continue;
    if (end - line_begin > lim.max_header_line || !copyable_line(buf.substr(line_begin, end - line_begin)))
      continue;
    const HeaderId id = header_id(buf.substr(line_begin, name_end - line_begin));
    // Only what an answer copies (RFC 3261 §8.2.6.2), the first of each single-valued one.
    if (id != HeaderId::via && id != HeaderId::from && id != HeaderId::to && id != HeaderId::call_id &&
        id != HeaderId::cseq)
      continue;
    auto& first = m.first_[static_cast<std::size_t>(id)];
    if (id != HeaderId::via && first != 0) continue;
    if (m.header_count_ >= lim.max_headers) break;
    Header& h = m.add_slot();
    h.name = buf.substr(line_begin, name_end - line_begin);
    h.value = lex::trim(buf.substr(colon + 1, end - colon - 1));
    h.line_begin = static_cast<std::uint32_t>(line_begin);
    h.line_end = static_cast<std::uint32_t>(end + 2);
    h.id = id;
    if (first == 0) first = static_cast<std::uint32_t>(m.header_count_);
    if (id == HeaderId::cseq || id == HeaderId::call_id)
      (void)single_valued(m, h);  // value kept when it reads
  }
  if (m.method_name_.empty()) m.method_name_ = m.cseq_.method;
  if (m.method_name_.empty()) return Error::bad_start_line;  // nothing says this is a request
  m.method_ = method_from_name(m.method_name_);
  return Error::ok;
}

bool is_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const std::size_t n = utf8_sequence(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

Error salvage(std::string_view bytes, Message& out, const Limits& limits) {
  return Parser::salvage(bytes, out, limits);
}

namespace {

// Content-Length from a complete header section (start line excluded), as the framer needs it.
Error stream_content_length(std::string_view headers, std::uint32_t& out) noexcept {
  bool found = false;
  std::size_t pos = 0;
  while (pos < headers.size()) {
    std::size_t eol = headers.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = headers.size();
    std::size_t name_end = pos;
    while (name_end < eol && lex::is_token(headers[name_end])) ++name_end;
    std::size_t colon = name_end;
    while (colon < eol && lex::is_wsp(headers[colon])) ++colon;
    // Only "Content-Length" and "l" can match: skip the table lookup for every other line.
    const char first = lex::lower(headers[pos]);
    const bool is_cl = (first == 'c' || first == 'l') && name_end > pos && colon < eol &&
                       headers[colon] == ':' &&
                       header_id(headers.substr(pos, name_end - pos)) == HeaderId::content_length;
    // The value runs over continuation lines.
    std::size_t end = eol;
    while (end + 2 < headers.size() && lex::is_wsp(headers[end + 2])) {
      end = headers.find("\r\n", end + 2);
      if (end == std::string_view::npos) end = headers.size();
    }
    if (is_cl) {
      std::uint32_t v = 0;
      if (!lex::parse_uint(lex::trim(headers.substr(colon + 1, end - colon - 1)), 0xffffffffu, v))
        return Error::bad_content_length;
      if (found) return v == out ? Error::duplicate_header : Error::conflicting_content_length;
      found = true;
      out = v;
    }
    pos = end + 2;
  }
  return found ? Error::ok : Error::missing_content_length;
}

}  // namespace

Frame frame_stream(std::string_view b, const Limits& lim, std::size_t resume_from) noexcept {
  Frame f;
  if (b.empty()) return f;
  if (b[0] == '\r' || b[0] == '\n') {
    // Between messages only CRLF keep-alives are legal (RFC 5626 §4.4.1, RFC 3261 §7.5).
    if (b[0] != '\r') return {FrameStatus::error, 0, Error::bad_line_ending, 0};
    if (b.size() < 2) return f;
    if (b[1] != '\n') return {FrameStatus::error, 0, Error::bad_line_ending, 0};
    if (b.size() < 3) return f;
    if (b[2] != '\r') return {FrameStatus::stray_crlf, 2, Error::ok, 0};
    if (b.size() < 4) return f;
    if (b[3] != '\n') return {FrameStatus::error, 0, Error::bad_line_ending, 0};
    return {FrameStatus::keep_alive, 4, Error::ok, 0};
  }
  // Garbage that cannot start a message is refused at once rather than buffered up to the limit.
  if (!lex::is_token(b[0])) return {FrameStatus::error, 0, Error::bad_start_line, 0};

  const std::size_t window = std::min(b.size(), lim.max_message_size);
  const std::size_t from = resume_from > 3 ? std::min(resume_from - 3, window) : 0;
  std::size_t end = b.substr(0, window).find("\r\n\r\n", from);
  if (end == std::string_view::npos) {
    if (b.size() >= lim.max_message_size) return {FrameStatus::error, 0, Error::message_too_large, 0};
    f.scanned = window;
    return f;
  }
  const std::size_t body_begin = end + 4;
  std::size_t first_eol = b.find("\r\n");  // exists: end was found
  std::uint32_t cl = 0;
  Error e = first_eol == end ? Error::missing_content_length
                             : stream_content_length(b.substr(first_eol + 2, end - first_eol), cl);
  if (e != Error::ok) return {FrameStatus::error, 0, e, 0};
  if (cl > lim.max_message_size || body_begin + cl > lim.max_message_size)
    return {FrameStatus::error, 0, Error::content_length_too_large, 0};
  const std::size_t total = body_begin + cl;
  // Header section in, body not: a resumed search must find this header end
  // again (frame_stream searches from resume_from - 3), not the next message's.
  if (b.size() < total) return {FrameStatus::need_more, total, Error::ok, end + 3};
  return {FrameStatus::message, total, Error::ok, 0};
}

}  // namespace edge::sip
