// Size limits the parser and the stream framer enforce, so no input causes unbounded work or
// memory.
#pragma once

#include <cstddef>

namespace edge::sip {

struct Limits {
  // Whole message, start line + headers + body. 64 KiB is the largest UDP datagram and far
  // above what any phone sends; RFC 3261 §18.1.1 bounds UDP messages near the path MTU.
  std::size_t max_message_size = 65535;
  // One header line including continuation lines (folding), without its final CRLF.
  std::size_t max_header_line = 8192;
  // Number of header lines (a comma-joined line counts once).
  std::size_t max_headers = 256;
};

}  // namespace edge::sip
