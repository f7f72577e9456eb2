// edged.conf -> ProxyConfig: the largest message the proxy sends toward the core (513 above it) is the
// core link's limit, limits.max_message_size, and on a UDP core at most one IPv4 datagram's payload.
#include "config_file.h"

#include <gtest/gtest.h>

#include <string>

namespace edge::firmware {
namespace {

net::ProxyConfig proxy_for(const std::string& core, const std::string& extra = {}) {
  const std::string text =
      "listen = udp 127.0.0.1 5060\nlisten = tcp 127.0.0.1 5060\ncore = " + core + "\n" + extra;
  return parse_config_text(text, "test", "/nonexistent-state-dir").proxy_config();
}

TEST(ConfigLimits, TheCoreSidesLimitIsTheCoreLinksMaxMessageSize) {
  EXPECT_EQ(proxy_for("sip:127.0.0.1:5080;transport=tcp").limits.max_core_message_size, 65'535u);
  EXPECT_EQ(proxy_for("sip:127.0.0.1:5080;transport=tcp", "limits.max_message_size = 4096\n")
                .limits.max_core_message_size,
            4096u);
}

TEST(ConfigLimits, OnAUdpCoreTheLimitIsAlsoOneDatagram) {
  EXPECT_EQ(proxy_for("sip:127.0.0.1:5080;transport=udp").limits.max_core_message_size,
            net::ProxyLimits::kMaxUdpPayload);
  EXPECT_EQ(proxy_for("sip:127.0.0.1:5080;transport=udp", "limits.max_message_size = 100000\n")
                .limits.max_core_message_size,
            65'507u);
  EXPECT_EQ(proxy_for("sip:127.0.0.1:5080;transport=udp", "limits.max_message_size = 2048\n")
                .limits.max_core_message_size,
            2048u);
}

}  // namespace
}  // namespace edge::firmware
