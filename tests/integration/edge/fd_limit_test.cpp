// Issue 18, "limits that hold under systemd": edged raises its soft RLIMIT_NOFILE to what
// limits.max_connections needs (up to the hard limit) and logs it; a max_connections the hard limit
// cannot hold is refused at start (exit 3) and at apply (the front end's validation), with the reason.
#include <gtest/gtest.h>

#include <string>

#include "edged_process.h"

namespace edge::test {
namespace {

// edged under prlimit(1), which sets the limits and execs it in place.
EdgedOptions under_nofile(const std::string& soft_hard, const std::string& max_connections) {
  EdgedOptions o;
  o.wrapper = {find_program("prlimit", "util-linux").string(), "--nofile=" + soft_hard, "--"};
  o.extra = {{"limits.max_connections", max_connections}};
  return o;
}

TEST(EdgedFdLimit, RefusesMaxConnectionsAboveTheHardLimitAtStart) {
  const std::string why = start_failure(under_nofile("512:512", "1000"));
  EXPECT_NE(why.find("status 3"), std::string::npos) << why;
  EXPECT_NE(why.find("event=config_invalid"), std::string::npos) << why;
  EXPECT_NE(why.find("limits.max_connections = 1000 needs 1256 file descriptors"), std::string::npos) << why;
  EXPECT_NE(why.find("the hard RLIMIT_NOFILE is 512"), std::string::npos) << why;
  EXPECT_NE(why.find("at most 256"), std::string::npos) << why;
}

TEST(EdgedFdLimit, RaisesTheSoftLimitLogsItAndRefusesAnApplyAboveTheHardLimit) {
  EdgedProcess edge(under_nofile("300:4096", "1000"));
  const auto fd = edge.events("fd_limit");
  ASSERT_FALSE(fd.empty()) << edge.log();
  auto f = parse_log_fields(fd.back());
  EXPECT_EQ(f["soft"], "1256") << fd.back();
  EXPECT_EQ(f["hard"], "4096") << fd.back();
  EXPECT_EQ(f["raised"], "true") << fd.back();

  std::string out;
  ASSERT_EQ(edge.edgectl({"property", "set", "limits.max_connections", "5000"}, &out), 0) << out;
  EXPECT_EQ(edge.edgectl({"apply"}, &out), 3) << out;
  EXPECT_NE(out.find("limits.max_connections = 5000 needs 5256 file descriptors"), std::string::npos) << out;
  EXPECT_NE(out.find("the hard RLIMIT_NOFILE is 4096"), std::string::npos) << out;

  // Within the hard limit: applied, the soft limit raised again.
  ASSERT_EQ(edge.edgectl({"property", "set", "limits.max_connections", "3000"}, &out), 0) << out;
  ASSERT_EQ(edge.edgectl({"apply"}, &out), 0) << out;
  ASSERT_EQ(edge.edgectl({"property", "get", "limits.max_connections"}, &out), 0) << out;
  EXPECT_NE(out.find("3000"), std::string::npos) << out;
  EXPECT_EQ(edge.stop(), 0) << edge.log();
}

}  // namespace
}  // namespace edge::test
