// Flow identity (transport + local and remote endpoint) as plain bytes, hashable and comparable.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace edge::flow {

// SIP transports an outbound flow can run over. The numeric values are the
// wire codes of token format v1 (docs/token-format.md): never renumber them,
// only append. 0 is deliberately unused so an all-zero byte is malformed.
enum class Transport : std::uint8_t {
  udp = 1,
  tcp = 2,
  tls = 3,
  sctp = 4,
  tls_sctp = 5,  // RFC 4168 "TLS-SCTP"
  ws = 6,        // RFC 7118
  wss = 7,       // RFC 7118
};
inline constexpr std::array<Transport, 7> kAllTransports = {
    Transport::udp,      Transport::tcp, Transport::tls, Transport::sctp,
    Transport::tls_sctp, Transport::ws,  Transport::wss};

// The Via transport token ("UDP", "TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS").
const char* to_string(Transport t) noexcept;
// Wire code -> transport; nullopt for codes no transport has.
std::optional<Transport> transport_from_code(std::uint8_t code) noexcept;
// True for transports where RFC 5626 flows are connections (everything but UDP).
constexpr bool is_connection_oriented(Transport t) noexcept { return t != Transport::udp; }

enum class Family : std::uint8_t { ipv4 = 4, ipv6 = 6 };

// One side of a flow: address bytes in network order plus a port in host order.
// IPv4 uses address[0..3]; the rest of the array is ignored by ==, hashing and
// encoding, so a stale tail can never make two equal endpoints differ.
struct Endpoint {
  Family family = Family::ipv4;
  std::array<std::uint8_t, 16> address{};
  std::uint16_t port = 0;

  static Endpoint v4(const std::array<std::uint8_t, 4>& addr, std::uint16_t port) noexcept;
  static Endpoint v6(const std::array<std::uint8_t, 16>& addr, std::uint16_t port) noexcept;
  // Textual address ("192.0.2.1", "2001:db8::1"; no brackets); nullopt when it
  // is neither. For configuration and tests, not for the per-message path.
  static std::optional<Endpoint> parse(std::string_view ip, std::uint16_t port);

  std::size_t address_size() const noexcept { return family == Family::ipv4 ? 4 : 16; }
  std::span<const std::uint8_t> address_bytes() const noexcept { return {address.data(), address_size()}; }
  // ::ffff:a.b.c.d as seen on a dual-stack socket.
  bool is_v4_mapped() const noexcept;
  // The same endpoint with a v4-mapped IPv6 address turned into plain IPv4, so a
  // flow has one identity whichever socket type accepted it.
  Endpoint unmapped() const noexcept;

  friend bool operator==(const Endpoint& a, const Endpoint& b) noexcept;
};

// "192.0.2.1:5060" / "[2001:db8::1]:5061".
std::string to_string(const Endpoint& e);

// The identity of a flow (RFC 5626 §5.2: transport, local and remote address
// and port). The flow table keys its entries on this; the token carries it.
struct FlowKey {
  Transport transport = Transport::udp;
  Endpoint local;
  Endpoint remote;

  friend bool operator==(const FlowKey& a, const FlowKey& b) noexcept {
    return a.transport == b.transport && a.local == b.local && a.remote == b.remote;
  }
};

// "TCP 192.0.2.1:5060->198.51.100.7:40312" for logs.
std::string to_string(const FlowKey& k);

// SipHash-1-3 of data under a 128-bit key. The remote address and port of a
// flow are chosen by whoever connects, so table hashing must be keyed to keep
// an attacker from piling flows into one bucket (hash flooding).
std::uint64_t siphash13(const std::array<std::uint64_t, 2>& key, std::span<const std::uint8_t> data) noexcept;
// SipHash-2-4, the reference variant; exposed so tests can check the
// implementation against the published vectors.
std::uint64_t siphash24(const std::array<std::uint64_t, 2>& key, std::span<const std::uint8_t> data) noexcept;

// A 128-bit key drawn once per process from the OS random source.
const std::array<std::uint64_t, 2>& process_hash_key() noexcept;

// Keyed hash of a FlowKey (uses process_hash_key()); stable within a process.
struct FlowKeyHash {
  std::size_t operator()(const FlowKey& k) const noexcept;
};
struct EndpointHash {
  std::size_t operator()(const Endpoint& e) const noexcept;
};

}  // namespace edge::flow

template <>
struct std::hash<edge::flow::FlowKey> : edge::flow::FlowKeyHash {};
template <>
struct std::hash<edge::flow::Endpoint> : edge::flow::EndpointHash {};
