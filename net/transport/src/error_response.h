// Internal: the 400/513 a stream connection answers to a message it cannot frame, before it closes.
#pragma once

#include "edge/net/transport/config.h"

#include <string>
#include <string_view>

namespace edge::net::detail {

// A response with `status` (400, 513, ...) to the request at the start of
// `bytes`, from whatever of its header section reads (sip::salvage: Via, From,
// To, Call-ID, CSeq; Content-Length is ignored, it is what usually broke the
// framing); empty for status 0, a response, an ACK or bytes that are no request.
std::string error_response(std::string_view bytes, int status, const TransportConfig& cfg);

}  // namespace edge::net::detail
