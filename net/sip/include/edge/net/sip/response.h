// Locally generated responses (400, 403, 420, 421, 430, 483, 503, ...) built from a request.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "edge/net/sip/error.h"
#include "edge/net/sip/message.h"

namespace edge::sip {

struct ExtraHeader {
  std::string_view name;   // a token, e.g. "Retry-After", "Unsupported", "Require", "Server"
  std::string_view value;  // one line
};

struct ResponseSpec {
  int status = 0;           // 100..699
  std::string_view reason;  // default_reason(status) when empty
  std::string_view to_tag;  // added to To when it has no tag (ignored for 100)
  std::span<const ExtraHeader> extra;
  // RFC 3581 §4: where the request came from, to fill received/rport in the top Via copy so
  // the response can be routed back; leave empty to copy the Vias untouched.
  std::string_view source_ip;
  std::uint16_t source_port = 0;
};

// RFC 3261 §8.2.6.2: copies every Via (in order), From, To (adding the tag), Call-ID and CSeq
// of the request, adds the extra headers and "Content-Length: 0". Appends to out. Works on a
// salvage()d request too: what is missing is missing from the answer; a To that does not read
// as a name-addr gets no tag, a top Via that does not read gets no received/rport.
// not_a_request for a response, bad_edit_input for an ACK (never answered) or a bad spec.
Error build_response(const Message& request, const ResponseSpec& spec, std::string& out);

std::string_view default_reason(int status) noexcept;

// A To tag from caller-owned state (e.g. the same seed as make_branch and a counter).
struct Tag {
  char text[16];
  std::string_view view() const noexcept { return {text, sizeof text}; }
};
Tag make_tag(std::uint64_t seed, std::uint64_t counter) noexcept;
// True when `tag` is make_tag(seed, c) for some c < issued (make_tag is a bijection of the counter,
// so this needs no table; a foreign 16-hex-digit tag matches with probability issued / 2^64).
bool is_own_tag(std::uint64_t seed, std::string_view tag, std::uint64_t issued) noexcept;

}  // namespace edge::sip
