// AuditLog (append-only JSON lines) and EventBus (fan-out, bounded queues, close).
#include <edge/mgmt/audit.h>
#include <edge/mgmt/events.h>
#include <edge/test/process.h>
#include <edge/test/softhsm_fixture.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <sstream>
#include <thread>

namespace edge::mgmt {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> lines(const std::filesystem::path& p) {
  std::istringstream in(edge::test::read_file(p));
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(AuditLog, RecordsAreJsonLinesAppendedAcrossReopen) {
  edge::test::TempDir tmp("edge-audit");
  const auto path = tmp.path() / "audit.log";
  {
    AuditLog log(path);
    log.record("uid:0", "apply", "sip.flow_timer: 30 -> 60", "ok");
  }
  {
    AuditLog log(path);
    log.record("cert:ops \"1\"", "set_property", "line\nbreak\t\x01", "refused: nothing staged");
  }
  const auto l = lines(path);
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].rfind("{\"time\":\"", 0), 0u);
  EXPECT_NE(l[0].find("\"actor\":\"uid:0\",\"action\":\"apply\",\"detail\":\"sip.flow_timer: 30 -> 60\""),
            std::string::npos);
  EXPECT_NE(l[0].find("Z\","), std::string::npos) << "UTC time stamp";
  EXPECT_EQ(l[0].back(), '}');
  EXPECT_NE(l[1].find(R"("actor":"cert:ops \"1\"")"), std::string::npos);
  EXPECT_NE(l[1].find(R"("detail":"line\nbreak\t\u0001")"), std::string::npos);
  EXPECT_NE(l[1].find(R"("result":"refused: nothing staged"})"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

v1::Event event(std::uint64_t gen) {
  v1::Event e;
  e.set_kind(v1::Event::APPLY);
  e.set_generation(gen);
  return e;
}

TEST(EventBus, EveryWatcherGetsEveryEventStamped) {
  EventBus bus;
  auto a = bus.subscribe();
  auto b = bus.subscribe();
  bus.publish(event(1));
  bus.publish(event(2));
  for (auto* s : {a.get(), b.get()}) {
    auto e1 = s->next(1s);
    auto e2 = s->next(1s);
    ASSERT_TRUE(e1 && e2);
    EXPECT_EQ(e1->generation(), 1u);
    EXPECT_EQ(e2->generation(), 2u);
    EXPECT_GT(e1->time_unix_ms(), 0);
    EXPECT_FALSE(s->next(10ms).has_value());
  }
}

TEST(EventBus, SlowWatcherLosesOldestAndCountsThem) {
  EventBus bus(3);
  auto s = bus.subscribe();
  for (std::uint64_t g = 1; g <= 5; ++g) bus.publish(event(g));
  EXPECT_EQ(s->dropped(), 2u);
  EXPECT_EQ(s->next(1s)->generation(), 3u);
}

TEST(EventBus, CloseWakesAWaitingWatcher) {
  EventBus bus;
  auto s = bus.subscribe();
  std::optional<v1::Event> got = event(9);
  std::thread t([&] { got = s->next(60s); });
  std::this_thread::sleep_for(50ms);
  bus.close();
  t.join();  // would take a minute without the wake-up
  EXPECT_FALSE(got.has_value());
  EXPECT_FALSE(bus.subscribe()->next(0ms).has_value());
}

TEST(EventBus, DroppedSubscriptionStopsReceiving) {
  EventBus bus;
  auto keep = bus.subscribe();
  bus.subscribe().reset();
  bus.publish(event(1));
  EXPECT_TRUE(keep->next(1s).has_value());
}

}  // namespace
}  // namespace edge::mgmt
