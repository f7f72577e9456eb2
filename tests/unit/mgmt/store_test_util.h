// What the config store tests write and look for: a generation with a given Flow-Timer, and the
// path of a generation's file.
#pragma once

#include <edge/mgmt/properties.h>
#include <edge/mgmt/v1/config.pb.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace edge::mgmt::store_test {

inline v1::StoredGeneration gen(std::uint64_t n, std::uint32_t flow_timer = 30) {
  v1::StoredGeneration g;
  g.set_generation(n);
  *g.mutable_config() = PropertyRegistry::instance().defaults();
  g.mutable_config()->mutable_sip()->set_flow_timer(flow_timer);
  g.set_actor("test");
  g.set_summary("gen " + std::to_string(n));
  return g;
}

inline std::filesystem::path gen_file(const std::filesystem::path& dir, int n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "gen-%010d.cfg", n);
  return dir / buf;
}

}  // namespace edge::mgmt::store_test
