// Flow identity: endpoint construction, text forms, equality and keyed (SipHash) hashing.
#include <edge/net/token/flow_key.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <random>
#include <string>

namespace edge::flow {

const char* to_string(Transport t) noexcept {
  switch (t) {
    case Transport::udp:
      return "UDP";
    case Transport::tcp:
      return "TCP";
    case Transport::tls:
      return "TLS";
    case Transport::sctp:
      return "SCTP";
    case Transport::tls_sctp:
      return "TLS-SCTP";
    case Transport::ws:
      return "WS";
    case Transport::wss:
      return "WSS";
  }
  return "?";
}

std::optional<Transport> transport_from_code(std::uint8_t code) noexcept {
  for (Transport t : kAllTransports) {
    if (static_cast<std::uint8_t>(t) == code) return t;
  }
  return std::nullopt;
}

Endpoint Endpoint::v4(const std::array<std::uint8_t, 4>& addr, std::uint16_t p) noexcept {
  Endpoint e;
  e.family = Family::ipv4;
  std::copy(addr.begin(), addr.end(), e.address.begin());
  e.port = p;
  return e;
}

Endpoint Endpoint::v6(const std::array<std::uint8_t, 16>& addr, std::uint16_t p) noexcept {
  Endpoint e;
  e.family = Family::ipv6;
  e.address = addr;
  e.port = p;
  return e;
}

std::optional<Endpoint> Endpoint::parse(std::string_view ip, std::uint16_t p) {
  // inet_pton wants a NUL-terminated string; the longest textual IPv6 address
  // (with an embedded IPv4 part) is 45 characters.
  char buf[INET6_ADDRSTRLEN + 1];
  if (ip.empty() || ip.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = '\0';
  std::array<std::uint8_t, 16> a{};
  if (inet_pton(AF_INET, buf, a.data()) == 1) {
    return v4({a[0], a[1], a[2], a[3]}, p);
  }
  if (inet_pton(AF_INET6, buf, a.data()) == 1) return v6(a, p);
  return std::nullopt;
}

bool Endpoint::is_v4_mapped() const noexcept {
  // ::ffff:0:0/96, RFC 4291 §2.5.5.2.
  static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return family == Family::ipv6 && std::equal(std::begin(kPrefix), std::end(kPrefix), address.begin());
}

Endpoint Endpoint::unmapped() const noexcept {
  if (!is_v4_mapped()) return *this;
  return v4({address[12], address[13], address[14], address[15]}, port);
}

bool operator==(const Endpoint& a, const Endpoint& b) noexcept {
  if (a.family != b.family || a.port != b.port) return false;
  const auto ab = a.address_bytes();
  return std::equal(ab.begin(), ab.end(), b.address.begin());
}

std::string to_string(const Endpoint& e) {
  char buf[INET6_ADDRSTRLEN];
  const int af = e.family == Family::ipv4 ? AF_INET : AF_INET6;
  if (inet_ntop(af, e.address.data(), buf, sizeof buf) == nullptr) return "?";
  std::string out;
  if (e.family == Family::ipv6) {
    out.append("[").append(buf).append("]");
  } else {
    out.append(buf);
  }
  out.append(":").append(std::to_string(e.port));
  return out;
}

std::string to_string(const FlowKey& k) {
  return std::string(to_string(k.transport)) + " " + to_string(k.local) + "->" + to_string(k.remote);
}

namespace {

constexpr std::uint64_t rotl(std::uint64_t x, int b) noexcept { return (x << b) | (x >> (64 - b)); }

struct SipState {
  std::uint64_t v0, v1, v2, v3;
  // The SipRound as the paper writes it, one half-round per line.
  // clang-format off
  void round() noexcept {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  }
  // clang-format on
};

// Little-endian load, byte by byte: portable and alignment-free (the compiler
// turns it into one mov on x86).
std::uint64_t load_le(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

template <int C, int D>
std::uint64_t siphash(const std::array<std::uint64_t, 2>& key, std::span<const std::uint8_t> data) noexcept {
  SipState s{key[0] ^ 0x736f6d6570736575ULL, key[1] ^ 0x646f72616e646f6dULL, key[0] ^ 0x6c7967656e657261ULL,
             key[1] ^ 0x7465646279746573ULL};
  const std::size_t n = data.size();
  const std::size_t full = n & ~std::size_t{7};
  for (std::size_t i = 0; i < full; i += 8) {
    const std::uint64_t m = load_le(data.data() + i, 8);
    s.v3 ^= m;
    for (int r = 0; r < C; ++r) s.round();
    s.v0 ^= m;
  }
  const std::uint64_t b = (std::uint64_t{n & 0xff} << 56) | load_le(data.data() + full, n - full);
  s.v3 ^= b;
  for (int r = 0; r < C; ++r) s.round();
  s.v0 ^= b;
  s.v2 ^= 0xff;
  for (int r = 0; r < D; ++r) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

// Serialises an endpoint the way hashing wants it: family, address bytes, port.
std::size_t put_endpoint(const Endpoint& e, std::uint8_t* out) noexcept {
  std::size_t n = 0;
  out[n++] = static_cast<std::uint8_t>(e.family);
  const auto a = e.address_bytes();
  std::copy(a.begin(), a.end(), out + n);
  n += a.size();
  out[n++] = static_cast<std::uint8_t>(e.port >> 8);
  out[n++] = static_cast<std::uint8_t>(e.port);
  return n;
}

}  // namespace

std::uint64_t siphash13(const std::array<std::uint64_t, 2>& key,
                        std::span<const std::uint8_t> data) noexcept {
  return siphash<1, 3>(key, data);
}

std::uint64_t siphash24(const std::array<std::uint64_t, 2>& key,
                        std::span<const std::uint8_t> data) noexcept {
  return siphash<2, 4>(key, data);
}

const std::array<std::uint64_t, 2>& process_hash_key() noexcept {
  // std::random_device reads getrandom(2) on Linux; drawn once, on first use.
  static const std::array<std::uint64_t, 2> key = [] {
    std::random_device rd;
    auto draw = [&rd] { return (std::uint64_t{rd()} << 32) | rd(); };
    return std::array<std::uint64_t, 2>{draw(), draw()};
  }();
  return key;
}

std::size_t FlowKeyHash::operator()(const FlowKey& k) const noexcept {
  std::uint8_t buf[1 + 2 * (1 + 16 + 2)];
  std::size_t n = 0;
  buf[n++] = static_cast<std::uint8_t>(k.transport);
  n += put_endpoint(k.local, buf + n);
  n += put_endpoint(k.remote, buf + n);
  return static_cast<std::size_t>(siphash13(process_hash_key(), {buf, n}));
}

std::size_t EndpointHash::operator()(const Endpoint& e) const noexcept {
  std::uint8_t buf[1 + 16 + 2];
  const std::size_t n = put_endpoint(e, buf);
  return static_cast<std::size_t>(siphash13(process_hash_key(), {buf, n}));
}

}  // namespace edge::flow
