// The RFC 4475 torture messages, written for this project from the RFC's descriptions (section, name,
// what each exercises), with the answer an edge proxy gives each: forwarded to the core, answered by
// the edge with a status, or dropped. See rfc4475_corpus.cpp.
#pragma once

#include <string>
#include <vector>

namespace edge::test::hostile::rfc4475 {

enum class Expect {
  forwarded,  // the edge passes it on; whatever answer comes is the core's
  edge_400,
  edge_416,
  edge_420,
  edge_483,
  edge_505,
  dropped,      // a response that is not ours, or an ACK: nothing comes back
  closed,       // a stream cannot be framed past it: the edge closes (maybe after a 400)
  core_or_400,  // the edge does not interpret the part that is wrong: forwarded or 400, never silence
};

struct Message {
  const char* name;     // the RFC's short name (wsinv, intmeth, ...)
  const char* section;  // RFC 4475 section
  std::string bytes;    // CRLF line ends; Content-Length as the RFC intends it
  Expect udp;
  Expect stream;  // TCP and TLS (framing by Content-Length, RFC 3261 §18.3)
};

// Every message, in RFC order. Branches and Call-IDs carry `serial` so that one run's messages
// never collide with another's in a transaction table.
std::vector<Message> corpus(const std::string& serial);

const char* to_string(Expect e);

}  // namespace edge::test::hostile::rfc4475
