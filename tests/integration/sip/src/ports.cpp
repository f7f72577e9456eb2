// Free loopback ports: the kernel picks one, we check UDP and TCP can both take it.
#include "edge/test/sip/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace edge::test {
namespace {

// Binds a socket of that family and type to loopback:port; returns the bound port or 0.
std::uint16_t try_bind(int family, int type, std::uint16_t port) {
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sockaddr_in);
  } else {
    int one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    len = sizeof(sockaddr_in6);
  }
  std::uint16_t bound = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    bound = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                    : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  close(fd);
  return bound;
}

}  // namespace

std::uint16_t free_port(bool also_v6) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::uint16_t port = try_bind(AF_INET, SOCK_STREAM, 0);
    if (port == 0) continue;
    if (try_bind(AF_INET, SOCK_DGRAM, port) != port) continue;
    if (also_v6 && (try_bind(AF_INET6, SOCK_STREAM, port) != port || try_bind(AF_INET6, SOCK_DGRAM, port) != port)) {
      continue;
    }
    return port;
  }
  throw std::runtime_error("no free loopback port found");
}

}  // namespace edge::test
