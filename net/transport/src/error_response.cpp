// The 400/513 for a framing error: the header section parsed as a datagram, answered by sip::build_response.
#include "error_response.h"

#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"

namespace edge::net::detail {

std::string error_response(std::string_view bytes, int status, const TransportConfig& cfg) {
  if (status == 0) return {};
  // Parse as a datagram so a message without (or with a broken) Content-Length
  // still yields its Via/From/To/Call-ID/CSeq; only the header section is needed.
  const std::size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return {};
  // Content-Length lines are what usually broke the framing: leave them out
  // (a datagram parse does not need one). This is the rare error path; the copy is fine.
  std::string head;
  head.reserve(end + 4);
  std::string_view rest = bytes.substr(0, end + 2);
  while (!rest.empty()) {
    std::size_t eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol + 2);
    rest.remove_prefix(line.size());
    std::string_view name = line.substr(0, line.find(':'));
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (sip::header_id(name) == sip::HeaderId::content_length) continue;
    head.append(line);
  }
  head.append("\r\n");
  sip::Message msg;
  sip::ParseOptions opt;
  opt.limits.max_message_size = head.size() + 1;
  if (sip::parse(head, msg, opt) != sip::Error::ok || !msg.is_request()) return {};
  std::string out;
  sip::ExtraHeader server{"Server", cfg.server_header};
  sip::ResponseSpec spec;
  spec.status = status;
  if (!cfg.server_header.empty()) spec.extra = {&server, 1};
  if (sip::build_response(msg, spec, out) != sip::Error::ok) return {};
  return out;
}

}  // namespace edge::net::detail
