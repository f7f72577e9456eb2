// The 400/513 for a framing error: what reads of the header section (sip::salvage), answered by
// sip::build_response.
#include "error_response.h"

#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"

namespace edge::net::detail {

std::string error_response(std::string_view bytes, int status, const TransportConfig& cfg) {
  if (status == 0) return {};
  // Only the header section is read (a broken Content-Length is what usually broke
  // the framing); an unterminated one is read up to its last complete line.
  const std::size_t end = bytes.find("\r\n\r\n");
  if (end != std::string_view::npos) bytes = bytes.substr(0, end + 4);
  sip::Message msg;
  if (sip::salvage(bytes, msg) != sip::Error::ok || msg.method() == sip::Method::ack) return {};
  std::string out;
  sip::ExtraHeader server{"Server", cfg.server_header};
  sip::ResponseSpec spec;
  spec.status = status;
  if (!cfg.server_header.empty()) spec.extra = {&server, 1};
  if (sip::build_response(msg, spec, out) != sip::Error::ok) return {};
  return out;
}

}  // namespace edge::net::detail
