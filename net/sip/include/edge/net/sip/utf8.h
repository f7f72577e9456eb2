// Whether bytes are well-formed UTF-8 (RFC 3629), for transports that must say so (RFC 7118 §4.2).
#pragma once

#include <string_view>

namespace edge::sip {

// True when every byte of s is part of a well-formed UTF-8 sequence (RFC 3629: no overlongs,
// no surrogates, nothing above U+10FFFF). The parser itself is looser (RFC 3261's
// UTF8-NONASCII, and any octets in a body); a SIP message that is not UTF-8 goes to a
// WebSocket peer in a binary frame, never a text one (RFC 7118 §4.2, RFC 6455 §8.1).
bool is_utf8(std::string_view s) noexcept;

}  // namespace edge::sip
