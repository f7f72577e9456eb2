// edged.conf's `core` value (issue 17): one URI as before, or an ordered list with priority and weight;
// every mistake gets an error naming the entry.
#include "config_file.h"

#include <gtest/gtest.h>

#include <string>

namespace edge::firmware {
namespace {

std::string error_of(const std::string& value) {
  try {
    parse_core_list(value);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(CoreList, OneUriIsTheSingleCoreAsBefore) {
  const net::CoreConfig c = parse_core_list("sip:10.0.0.5:5070;transport=tcp");
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.address, "10.0.0.5");
  EXPECT_EQ(c.port, 5070);
  EXPECT_EQ(c.transport, flow::Transport::tcp);
  EXPECT_TRUE(c.targets.empty());
  ASSERT_EQ(net::core_targets(c).size(), 1u);
  EXPECT_EQ(net::core_targets(c)[0].port, 5070);
  EXPECT_EQ(error_of("sip:10.0.0.5"), "accepted");  // port 5060
}

TEST(CoreList, AListKeepsItsOrderPriorityAndWeight) {
  const net::CoreConfig c = parse_core_list(
      "sip:127.0.0.1:5070;transport=tcp;priority=1;weight=10, sip:127.0.0.1:5072;transport=tcp;priority=2 ,"
      "sip:[::1]:5074;transport=tcp");
  ASSERT_EQ(c.targets.size(), 3u);
  EXPECT_EQ(c.address, "127.0.0.1");  // the first core is also the single-core fields
  EXPECT_EQ(c.port, 5070);
  EXPECT_EQ(c.targets[0].priority, 1u);
  EXPECT_EQ(c.targets[0].weight, 10u);
  EXPECT_EQ(c.targets[1].port, 5072);
  EXPECT_EQ(c.targets[1].priority, 2u);
  EXPECT_EQ(c.targets[1].weight, 1u);
  EXPECT_EQ(c.targets[2].address, "::1");
  EXPECT_EQ(c.targets[2].priority, 3u) << "without priority=: its position";
}

TEST(CoreList, MistakesAreNamed) {
  // Beside a UDP first core reliable ones may come (requests above 1300 bytes go to them); not the reverse.
  EXPECT_EQ(error_of("sip:127.0.0.1:5070;transport=udp, sip:127.0.0.1:5070;transport=tcp"), "accepted");
  EXPECT_NE(error_of("sip:127.0.0.1:5070;transport=tcp, sip:127.0.0.1:5072;transport=udp")
                .find("core entry 2 ('sip:127.0.0.1:5072;transport=udp'): transport udp differs"),
            std::string::npos);
  EXPECT_NE(
      error_of("sip:127.0.0.1:5070;transport=tcp, sip:127.0.0.1:5070;transport=tcp").find("listed twice"),
      std::string::npos);
  EXPECT_NE(error_of("sip:127.0.0.1:5070;weight=0").find("weight: expected a number in 1..65535, got '0'"),
            std::string::npos);
  EXPECT_NE(error_of("sip:127.0.0.1:5070;priority=x").find("priority: expected a number"), std::string::npos);
  EXPECT_NE(error_of("sip:127.0.0.1:5070,,sip:127.0.0.1:5072").find("core entry 2 (''): empty entry"),
            std::string::npos);
  EXPECT_NE(error_of("sip:127.0.0.1:5070, sip:core2.example:5070")
                .find("core entry 2 ('sip:core2.example:5070'): core: 'core2.example' is not an IP address"),
            std::string::npos);
  EXPECT_NE(error_of("sip:127.0.0.1:5070, http://x").find("core entry 2"), std::string::npos);
}

// Requests from any configured core's own connection are the core's (the Via check takes every core).
TEST(CoreList, TheProxyKnowsEveryCoresAddress) {
  const EdgedConfig c = parse_config_text(
      "listen = tcp 127.0.0.1 5060\ncore = sip:127.0.0.1:5070;transport=tcp, "
      "sip:127.0.0.2:5072;transport=tcp\n",
      "test", "/tmp");
  const net::ProxyConfig p = c.proxy_config();
  EXPECT_EQ(p.core_address.port, 5070);
  ASSERT_EQ(p.other_core_addresses.size(), 1u);
  EXPECT_EQ(p.other_core_addresses[0].host, "127.0.0.2");
  EXPECT_EQ(p.other_core_addresses[0].port, 5072);
  EXPECT_EQ(c.core.health_interval.count(), 2000) << "the property's default";
  EXPECT_EQ(c.core.health_failures, 3u);
  const EdgedConfig off = parse_config_text(
      "listen = tcp 127.0.0.1 5060\ncore = sip:127.0.0.1:5070;transport=tcp\ncore.health_interval_ms = 0\n"
      "core.health_failures = 5\n",
      "test", "/tmp");
  EXPECT_EQ(off.core.health_interval.count(), 0);
  EXPECT_EQ(off.core.health_failures, 5u);
}

}  // namespace
}  // namespace edge::firmware
