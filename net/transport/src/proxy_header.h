// Internal: the PROXY protocol header (HAProxy, v1 text and v2 binary) a load balancer puts before a stream.
#pragma once

#include "edge/net/token/flow_key.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace edge::net::detail {

// v1: "PROXY TCP4 a b p q\r\n", at most 107 bytes (the spec's bound).
inline constexpr std::size_t kProxyV1Max = 107;
// v2: 16 fixed bytes, then addresses and TLVs. The spec allows 65535 bytes of
// them; a balancer sends 12 (TCP4) or 36 (TCP6) plus a few TLVs, so more is refused.
inline constexpr std::size_t kProxyV2MaxPayload = 1024;
inline constexpr std::size_t kProxyHeaderMax = 16 + kProxyV2MaxPayload;

// Why a connection on a PROXY listener was closed before its first message.
enum class ProxyRefusal : std::uint8_t {
  untrusted,    // a PROXY header from a source not in the trusted list
  missing,      // a trusted source that sent no PROXY header
  malformed,    // bad signature, version, command, syntax, address or length
  unsupported,  // well formed but nothing we can use: UNIX sockets, UDP
  timeout,      // not complete within the header read timeout
};
const char* to_string(ProxyRefusal r) noexcept;

struct ProxyHeader {
  // LOCAL (v2), UNKNOWN (v1) or AF_UNSPEC: the balancer speaks for itself (a
  // health check); the connection's own addresses apply.
  bool local = false;
  flow::Endpoint source;       // the client
  flow::Endpoint destination;  // what the client connected to (the balancer's front end)
};

struct ProxyParse {
  enum class Status : std::uint8_t { need_more, ok, refused } status = Status::need_more;
  std::size_t consumed = 0;  // ok: header bytes; what follows is the stream's own
  ProxyHeader header;
  ProxyRefusal refusal = ProxyRefusal::malformed;
  std::string_view detail;  // refused: for the log ("v1: bad port")
};

// Parses a PROXY header at the start of `bytes` (everything read so far).
// need_more until the header is complete; `missing` when the bytes cannot
// start one (so an ordinary SIP, TLS or HTTP stream is told apart at its first bytes).
ProxyParse parse_proxy_header(std::span<const std::uint8_t> bytes) noexcept;

// For a connection that must not send one: could `bytes` be the start of a
// PROXY header? need_more only while they are a strict prefix of a signature;
// a lone CRLF or CRLFCRLF (a keep-alive, also a prefix of the v2 signature) is not one.
enum class ProxyLook : std::uint8_t { proxy, not_proxy, need_more };
ProxyLook looks_like_proxy(std::span<const std::uint8_t> bytes) noexcept;

// An address range of trusted balancers: "10.0.0.0/8", "2001:db8::/32", or one address.
struct Cidr {
  flow::Endpoint network;  // port unused
  unsigned prefix = 0;
  static std::optional<Cidr> parse(std::string_view text);
  // v4-mapped IPv6 addresses match IPv4 ranges.
  bool contains(const flow::Endpoint& address) const noexcept;
};

}  // namespace edge::net::detail
