// EtcdClient and EtcdWatch against a real etcd (Debian etcd-server), one member on loopback in
// a process group the test owns: reads and writes, create / compare-and-swap, leases, a watch
// that survives the member's restart without losing or repeating an event, and several
// endpoints of which the first is dead or silent (cell.etcd_timeout_ms).
#include <arpa/inet.h>
#include <edge/cell/etcd.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "etcd_server.h"

namespace {

using edge::cell::EtcdClient;
using edge::cell::EtcdError;
using edge::cell::EtcdOptions;
using edge::cell::EtcdWatch;
using edge::cell::WatchEvent;
using edge::test::EtcdServer;
using namespace std::chrono_literals;

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override { etcd_.start(); }
  EtcdServer etcd_;
};

TEST_F(EtcdClientTest, PutGetPrefixAndRemove) {
  EtcdClient c(etcd_.options());
  EXPECT_FALSE(c.get("/cell/a").has_value());
  const std::int64_t r1 = c.put("/cell/a", "1");
  const std::int64_t r2 = c.put("/cell/b", std::string("two\0bytes", 9));
  c.put("/other", "x");
  EXPECT_GT(r2, r1);
  const auto a = c.get("/cell/a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->value, "1");
  EXPECT_EQ(a->mod_revision, r1);
  const auto range = c.get_prefix("/cell/");
  ASSERT_EQ(range.kvs.size(), 2u);
  EXPECT_EQ(range.kvs[1].value, std::string("two\0bytes", 9)) << "values are bytes";
  EXPECT_GE(range.revision, r2 + 1);
  EXPECT_EQ(c.remove("/cell/a"), 1);
  EXPECT_EQ(c.remove("/cell/a"), 0);
  EXPECT_EQ(c.get_prefix("/cell/").kvs.size(), 1u);
}

TEST_F(EtcdClientTest, CreateAndCompareAndSwapWriteOnlyWhenTheirConditionHolds) {
  EtcdClient c(etcd_.options());
  EXPECT_TRUE(c.create("/cell/phase", "idle"));
  EXPECT_FALSE(c.create("/cell/phase", "other")) << "exists";
  const auto now = c.get("/cell/phase");
  ASSERT_TRUE(now.has_value());
  EXPECT_FALSE(c.compare_and_swap("/cell/phase", now->mod_revision - 1, "stale"));
  EXPECT_EQ(c.get("/cell/phase")->value, "idle");
  EXPECT_TRUE(c.compare_and_swap("/cell/phase", now->mod_revision, "prepare"));
  EXPECT_FALSE(c.compare_and_swap("/cell/phase", now->mod_revision, "again")) << "the revision moved";
  EXPECT_EQ(c.get("/cell/phase")->value, "prepare");
  EXPECT_TRUE(c.compare_and_swap("/cell/new", 0, "absent-then-written"));
}

TEST_F(EtcdClientTest, AKeyOnALeaseGoesWithTheLease) {
  EtcdClient c(etcd_.options());
  const std::int64_t lease = c.grant_lease(2s);
  ASSERT_NE(lease, 0);
  c.put("/cell/members/a", "alive", lease);
  EXPECT_EQ(c.get("/cell/members/a")->lease, lease);
  EXPECT_GT(c.keep_alive(lease), 0);
  c.revoke_lease(lease);
  EXPECT_FALSE(c.get("/cell/members/a").has_value());
  EXPECT_EQ(c.keep_alive(lease), 0) << "a revoked lease reports TTL 0";

  // Without keep-alives the lease expires by itself (bounded wait).
  const std::int64_t short_lease = c.grant_lease(2s);
  c.put("/cell/members/b", "alive", short_lease);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    std::this_thread::sleep_for(100ms);
    gone = !c.get("/cell/members/b").has_value();
  }
  EXPECT_TRUE(gone) << "the key outlived its lease";
}

struct Collected {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> events;
  void add(const std::vector<WatchEvent>& batch) {
    std::lock_guard lock(mu);
    events.insert(events.end(), batch.begin(), batch.end());
    cv.notify_all();
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return events.size() >= n; });
  }
};

TEST_F(EtcdClientTest, AWatchSurvivesTheMembersRestartWithoutLosingOrRepeatingAnEvent) {
  EtcdOptions o = etcd_.options();
  EtcdClient c(o);
  Collected got;
  EtcdWatch w(c, "/cell/", 0, [&](const std::vector<WatchEvent>& b) { got.add(b); });
  // The watch is created asynchronously: write until the first event arrives (bounded).
  for (int i = 0; i < 50 && !got.wait_for(1, 100ms); ++i) c.put("/cell/v1", "published");
  ASSERT_TRUE(got.wait_for(1, 2s));
  c.remove("/cell/v1");
  c.put("/other/ignored", "x");
  ASSERT_TRUE(got.wait_for(2, 5s));

  etcd_.stop();
  etcd_.start();
  c.put("/cell/v2", "after restart");
  ASSERT_TRUE(got.wait_for(3, 10s)) << "no event after the restart";
  std::this_thread::sleep_for(300ms);  // anything repeated would arrive by now
  std::lock_guard lock(got.mu);
  std::vector<std::string> seen;
  for (const auto& e : got.events) {
    if (e.kv.key == "/cell/v1" && e.type == WatchEvent::Type::put && seen.size() > 0 &&
        seen.back() == "put /cell/v1")
      continue;  // several puts of v1 while the watch was being created
    seen.push_back((e.type == WatchEvent::Type::put ? "put " : "remove ") + e.kv.key);
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("put /cell/v1", "remove /cell/v1", "put /cell/v2"));
  EXPECT_GE(w.streams(), 2) << "the watch reconnected";
}

TEST(EtcdEndpoints, ADeadFirstEndpointIsSkippedAndNoReachableEndpointIsAnError) {
  EtcdServer live;
  live.start();
  EtcdOptions o = live.options();
  const std::string dead = "127.0.0.1:" + std::to_string(edge::test::free_port());
  o.endpoints = {dead, live.endpoint()};
  EtcdClient c(o);
  c.put("/cell/x", "1");
  EXPECT_EQ(c.endpoint(), live.endpoint()) << "moved on to the live endpoint";
  EXPECT_EQ(c.get("/cell/x")->value, "1");

  EtcdOptions none;
  none.endpoints = {dead};
  none.call_timeout = 500ms;
  EtcdClient unreachable(none);
  try {
    unreachable.get("/cell/x");
    FAIL() << "a read from no etcd succeeded";
  } catch (const EtcdError& e) {
    EXPECT_TRUE(e.unavailable()) << e.what();
    EXPECT_THAT(e.what(), ::testing::HasSubstr(dead));
  }
  EXPECT_THROW(EtcdClient(EtcdOptions{}), EtcdError) << "no endpoint";
}

// An endpoint that takes the TCP connection and never says a word (a hung etcd, a black-holing
// middlebox): a read waits the configured call timeout (cell.etcd_timeout_ms), not more, then goes
// to the next endpoint; with no other endpoint it is an error that says so.
TEST(EtcdEndpoints, ASilentEndpointIsPassedOverAfterTheCallTimeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const std::unique_ptr<const int, void (*)(const int*)> closer(&fd, [](const int* f) { ::close(*f); });
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // the kernel completes connections; nobody accepts them
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string silent = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));

  EtcdOptions alone;
  alone.endpoints = {silent};
  alone.call_timeout = 400ms;
  EtcdClient c(alone);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    c.get("/cell/x");
    ADD_FAILURE() << "a read from a silent endpoint succeeded";
  } catch (const EtcdError& e) {
    EXPECT_TRUE(e.unavailable()) << e.what();
    EXPECT_THAT(e.what(), ::testing::HasSubstr(silent));
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 350ms) << "gave up before the call timeout";
  EXPECT_LT(waited, 1900ms) << "waited past the configured 400 ms (towards the 2 s default)";

  EtcdServer live;
  live.start();
  EtcdOptions o = live.options();
  o.endpoints = {silent, live.endpoint()};
  o.call_timeout = 400ms;
  EtcdClient two(o);
  EXPECT_FALSE(two.get("/cell/x").has_value());
  EXPECT_EQ(two.endpoint(), live.endpoint()) << "moved on to the endpoint that answers";
}

}  // namespace
