// HsmWorkQueue (budgets per source, the bound, priority classes, shedding, stop) and FailedTokenCache,
// without an HSM: jobs are plain functions and a latch holds the one thread where a test needs it.
#include <edge/net/token/failed_token_cache.h>
#include <edge/net/token/hsm_work.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace edge::flow {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Endpoint v4(const char* ip) { return *Endpoint::parse(ip, 5060); }

// Holds a queue thread inside a job until opened.
class Latch {
 public:
  void wait_open() {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, 20s, [&] { return open_; });
  }
  void wait_entered() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 20s, [&] { return entered_; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

// What the jobs did. Declare it before the queue: the queue's destructor sheds what waits into it.
struct Record {
  std::mutex mu;
  std::vector<std::string> ran, shed;
  HsmWorkQueue::Job job(std::string name) {
    return [this, name](bool run) {
      std::lock_guard lock(mu);
      (run ? ran : shed).push_back(name);
    };
  }
};

TEST(HsmWorkQueue, EachSourceHasItsOwnVerifyBudgetAndTheCoreHasNone) {
  Record r;
  HsmWorkQueue q({.threads = 1, .verify_per_second = 0, .verify_burst = 3});
  const auto now = Clock::now();
  int queued = 0;
  for (int i = 0; i < 10; ++i)
    queued += q.submit(HsmWorkKind::verify, HsmPriority::unregistered, v4("198.51.100.1"), r.job("a"), now) ==
              HsmAdmission::queued;
  EXPECT_EQ(queued, 3);
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::registered, v4("198.51.100.1"), r.job("a"), now),
            HsmAdmission::source_budget);
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::unregistered, v4("198.51.100.2"), r.job("b"), now),
            HsmAdmission::queued);
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::core, v4("198.51.100.1"), r.job("core"), now),
            HsmAdmission::queued);
  ASSERT_TRUE(q.drain(20s));
  EXPECT_EQ(q.stats().refused_verify_budget, 8u);
  EXPECT_EQ(r.ran.size(), 5u);
}

TEST(HsmWorkQueue, TheBudgetRefillsAtItsRateUpToItsBurst) {
  Record r;
  HsmWorkQueue q({.threads = 1, .verify_per_second = 10, .verify_burst = 2});
  const auto t0 = Clock::now();
  const Endpoint s = v4("198.51.100.1");
  auto take = [&](Clock::time_point t) {
    return q.submit(HsmWorkKind::verify, HsmPriority::unregistered, s, r.job("x"), t) == HsmAdmission::queued;
  };
  EXPECT_TRUE(take(t0));
  EXPECT_TRUE(take(t0));
  EXPECT_FALSE(take(t0));
  EXPECT_TRUE(take(t0 + 100ms));  // 10/s: one more after 100 ms
  EXPECT_FALSE(take(t0 + 100ms));
  EXPECT_TRUE(take(t0 + 10s));  // never more than the burst, however long the pause
  EXPECT_TRUE(take(t0 + 10s));
  EXPECT_FALSE(take(t0 + 10s));
  EXPECT_FALSE(take(t0 + 5s));  // an earlier clock reading gives nothing back
}

TEST(HsmWorkQueue, MintsAreBudgetedOnlyForFlowsThatDidNotRegister) {
  Record r;
  HsmWorkQueue q({.threads = 1, .mint_per_second = 0, .mint_burst = 1});
  const Endpoint s = v4("198.51.100.1");
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("1")), HsmAdmission::queued);
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("2")),
            HsmAdmission::source_budget);
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::registered, s, r.job("3")), HsmAdmission::queued);
  // A verify has its own budget.
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::unregistered, s, r.job("4")), HsmAdmission::queued);
  EXPECT_EQ(q.stats().refused_mint_budget, 1u);
}

TEST(HsmWorkQueue, AnIpv6SubscriberIsOneSourcePerSlash64) {
  Record r;
  HsmWorkQueue q({.threads = 1, .verify_per_second = 0, .verify_burst = 1});
  auto sub = [&](const char* ip) {
    return q.submit(HsmWorkKind::verify, HsmPriority::unregistered, *Endpoint::parse(ip, 5060), r.job(ip));
  };
  EXPECT_EQ(sub("2001:db8:1:2::1"), HsmAdmission::queued);
  EXPECT_EQ(sub("2001:db8:1:2:ffff::9"), HsmAdmission::source_budget);  // same /64
  EXPECT_EQ(sub("2001:db8:1:3::1"), HsmAdmission::queued);
  EXPECT_EQ(sub("::ffff:198.51.100.9"), HsmAdmission::queued);  // v4-mapped counts as its IPv4 address
  EXPECT_EQ(sub("198.51.100.9"), HsmAdmission::source_budget);
}

TEST(HsmWorkQueue, WaitingWorkIsServedCoreFirstThenRegisteredThenTheRest) {
  Latch latch;
  Record r;
  HsmWorkQueue q({.threads = 1});
  const Endpoint s = v4("198.51.100.1");
  ASSERT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::core, s, [&](bool) { latch.wait_open(); }),
            HsmAdmission::queued);
  latch.wait_entered();
  q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("u1"));
  q.submit(HsmWorkKind::mint, HsmPriority::registered, s, r.job("r1"));
  q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("u2"));
  q.submit(HsmWorkKind::verify, HsmPriority::core, s, r.job("c1"));
  q.submit(HsmWorkKind::verify, HsmPriority::registered, s, r.job("r2"));
  latch.open();
  ASSERT_TRUE(q.drain(20s));
  EXPECT_EQ(r.ran, (std::vector<std::string>{"c1", "r1", "r2", "u1", "u2"}));
  EXPECT_EQ(q.stats().completed_by_priority[0], 2u);
}

TEST(HsmWorkQueue, AFullQueueShedsTheNewestLessUrgentJobOrRefuses) {
  Latch latch;
  Record r;
  HsmWorkQueue q({.threads = 1, .max_queued = 2});
  const Endpoint s = v4("198.51.100.1");
  q.submit(HsmWorkKind::mint, HsmPriority::core, s, [&](bool) { latch.wait_open(); });
  latch.wait_entered();
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("u1")), HsmAdmission::queued);
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("u2")), HsmAdmission::queued);
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::unregistered, s, r.job("u3")), HsmAdmission::queue_full);
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::registered, s, r.job("r1")), HsmAdmission::queued);
  EXPECT_EQ(r.shed, (std::vector<std::string>{"u2"}));  // told at once, on the submitting thread
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::core, s, r.job("c1")), HsmAdmission::queued);
  EXPECT_EQ(r.shed, (std::vector<std::string>{"u2", "u1"}));
  EXPECT_EQ(q.submit(HsmWorkKind::verify, HsmPriority::registered, s, r.job("r2")), HsmAdmission::queue_full);
  latch.open();
  ASSERT_TRUE(q.drain(20s));
  EXPECT_EQ(r.ran, (std::vector<std::string>{"c1", "r1"}));
  const auto st = q.stats();
  EXPECT_EQ(st.shed, 2u);
  EXPECT_EQ(st.refused_queue_full, 2u);
  EXPECT_EQ(st.queued_peak, 2u);
}

TEST(HsmWorkQueue, StopShedsWhatWaitsLetsTheRunningJobFinishAndRefusesLaterWork) {
  Latch latch;
  Record r;
  HsmWorkQueue q({.threads = 1});
  const Endpoint s = v4("198.51.100.1");
  bool finished = false;
  q.submit(HsmWorkKind::mint, HsmPriority::core, s, [&](bool) {
    latch.wait_open();
    finished = true;
  });
  latch.wait_entered();
  q.submit(HsmWorkKind::mint, HsmPriority::core, s, r.job("waiting"));
  std::thread opener([&] {
    std::this_thread::sleep_for(50ms);
    latch.open();
  });
  q.stop();
  opener.join();
  EXPECT_TRUE(finished);
  EXPECT_EQ(r.shed, (std::vector<std::string>{"waiting"}));
  EXPECT_TRUE(r.ran.empty());
  EXPECT_EQ(q.submit(HsmWorkKind::mint, HsmPriority::core, s, r.job("late")), HsmAdmission::stopped);
}

TEST(HsmWorkQueue, ConfigureChangesBudgetsAndBoundButNotTheThreads) {
  HsmWorkQueue q({.threads = 2, .max_queued = 8});
  HsmWorkConfig next{.threads = 9, .max_queued = 3, .verify_per_second = 1, .verify_burst = 1};
  q.configure(next);
  EXPECT_EQ(q.config().threads, 2u);
  EXPECT_EQ(q.config().max_queued, 3u);
  EXPECT_EQ(q.stats().max_queued, 3u);
  next.verify_burst = 0;
  EXPECT_THROW(q.configure(next), std::invalid_argument);
  EXPECT_EQ(q.config().verify_burst, 1.0);
  EXPECT_THROW(HsmWorkQueue({.threads = 0}), std::invalid_argument);
}

TEST(FailedTokenCache, RemembersARefusedTokenForItsLifetimeAndEpochOnly) {
  FailedTokenCache c(64, 1000ms);
  const std::vector<std::uint8_t> a{1, 2, 3, 4}, b{1, 2, 3, 5};
  const auto t0 = Clock::now();
  EXPECT_FALSE(c.contains(a, 7, t0));
  c.insert(a, 7, t0);
  EXPECT_TRUE(c.contains(a, 7, t0 + 999ms));
  EXPECT_FALSE(c.contains(b, 7, t0));       // another tag is another token
  EXPECT_FALSE(c.contains(a, 8, t0));       // another key-set epoch
  EXPECT_FALSE(c.contains(a, 7, t0 + 1s));  // expired
  c.insert(b, 7, t0);
  c.clear();
  EXPECT_FALSE(c.contains(b, 7, t0));
  EXPECT_EQ(c.stats().hits, 1u);
  FailedTokenCache off(0, 1000ms);
  off.insert(a, 7, t0);
  EXPECT_FALSE(off.contains(a, 7, t0));
}

}  // namespace
}  // namespace edge::flow
