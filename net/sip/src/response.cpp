// Builds a locally generated response from a parsed request.
#include "edge/net/sip/response.h"

#include "edge/net/sip/editor.h"
#include "edge/net/sip/headers.h"
#include "lex.h"
#include "mix64.h"

namespace edge::sip {

std::string_view default_reason(int status) noexcept {
  switch (status) {
    case 100:
      return "Trying";
    case 180:
      return "Ringing";
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 410:
      return "Gone";
    case 413:
      return "Request Entity Too Large";
    case 414:
      return "Request-URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Unsupported URI Scheme";
    case 420:
      return "Bad Extension";
    case 421:
      return "Extension Required";
    case 423:
      return "Interval Too Brief";
    case 430:
      return "Flow Failed";
    case 439:
      return "First Hop Lacks Outbound Support";
    case 480:
      return "Temporarily Unavailable";
    case 481:
      return "Call/Transaction Does Not Exist";
    case 482:
      return "Loop Detected";
    case 483:
      return "Too Many Hops";
    case 484:
      return "Address Incomplete";
    case 486:
      return "Busy Here";
    case 487:
      return "Request Terminated";
    case 488:
      return "Not Acceptable Here";
    case 500:
      return "Server Internal Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Server Time-out";
    case 505:
      return "Version Not Supported";
    case 513:
      return "Message Too Large";
    case 603:
      return "Decline";
    default:
      break;
  }
  if (status >= 100 && status < 200) return "Provisional";
  if (status >= 200 && status < 300) return "OK";
  if (status >= 300 && status < 400) return "Redirection";
  if (status >= 400 && status < 500) return "Client Error";
  if (status >= 500 && status < 600) return "Server Error";
  return "Global Failure";
}

Tag make_tag(std::uint64_t seed, std::uint64_t counter) noexcept {
  // Reuse the branch generator's bijection: the 16 hex digits after the magic cookie.
  Branch b = make_branch(seed ^ 0x7461677461677461ULL, counter);
  Tag t{};
  for (std::size_t i = 0; i < sizeof t.text; ++i) t.text[i] = b.view()[7 + i];
  return t;
}

using detail::mix64;
using detail::unmix64;

bool is_own_tag(std::uint64_t seed, std::string_view tag, std::uint64_t issued) noexcept {
  if (tag.size() != sizeof(Tag::text)) return false;
  std::uint64_t v = 0;
  for (char c : tag) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return false;
    v = v << 4 | static_cast<std::uint64_t>(d);
  }
  // make_tag = make_branch(seed ^ K, counter)[7..23) = hex(mix64(counter ^ mix64(seed ^ K))).
  const std::uint64_t counter = unmix64(v) ^ mix64(seed ^ 0x7461677461677461ULL);
  return counter < issued;
}

Error build_response(const Message& req, const ResponseSpec& spec, std::string& out) {
  if (!req.is_request()) return Error::not_a_request;
  if (req.method() == Method::ack) return Error::bad_edit_input;
  if (spec.status < 100 || spec.status > 699) return Error::bad_edit_input;
  if (!lex::is_one_line(spec.reason)) return Error::bad_edit_input;
  if (!spec.to_tag.empty() && !lex::all_token(spec.to_tag)) return Error::bad_edit_input;
  for (const ExtraHeader& h : spec.extra)
    if (!lex::all_token(h.name) || !lex::is_one_line(h.value)) return Error::bad_edit_input;

  Editor vias(req);
  // A top Via we cannot read (or none) is copied as it came: an answer that cannot carry
  // received/rport is still better than none (RFC 3261 §16.3 step 1; the edge sends it back on
  // the flow the request came on, whatever the Via says).
  if (!spec.source_ip.empty()) (void)vias.add_received_rport(0, spec.source_ip, spec.source_port);
  // A To we cannot read (or none) is copied as it came, without a tag.
  const Header* to = req.first(HeaderId::to);
  NameAddr to_value;
  const bool tag_to = to && parse_name_addr(to->value, to_value) == Error::ok && to_value.tag().empty();

  const std::size_t start = out.size();
  out.reserve(start + 256 + req.headers_end());
  out.append("SIP/2.0 ");
  char code[3] = {static_cast<char>('0' + spec.status / 100), static_cast<char>('0' + spec.status / 10 % 10),
                  static_cast<char>('0' + spec.status % 10)};
  out.append(code, 3);
  out.push_back(' ');
  out.append(spec.reason.empty() ? default_reason(spec.status) : spec.reason);
  out.append("\r\n");

  const std::string_view raw = req.raw();
  for (const Header& h : req.headers()) {
    switch (h.id) {
      case HeaderId::via:
        vias.append_range(out, h.line_begin, h.line_end);
        break;
      case HeaderId::to:
        if (spec.status > 100 && !spec.to_tag.empty() && tag_to && &h == to) {
          const std::size_t value_end = req.offset_of(h.value) + h.value.size();
          out.append(raw.substr(h.line_begin, value_end - h.line_begin));
          out.append(";tag=");
          out.append(spec.to_tag);
          out.append(raw.substr(value_end, h.line_end - value_end));
        } else {
          out.append(raw.substr(h.line_begin, h.line_end - h.line_begin));
        }
        break;
      case HeaderId::from:
      case HeaderId::call_id:
      case HeaderId::cseq:
        out.append(raw.substr(h.line_begin, h.line_end - h.line_begin));
        break;
      default:
        break;
    }
  }
  for (const ExtraHeader& h : spec.extra) {
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
  out.append("Content-Length: 0\r\n\r\n");
  return Error::ok;
}

}  // namespace edge::sip
