// UDP flows are bounded (limits.max_udp_flows): a flood from many source ports keeps the flow table and
// the process's memory bounded by evicting flows that never registered; registered flows stay routable.
#include "transport_test_support.h"

#include <fstream>

namespace edge::net::test {
namespace {

using flow::Transport;

// Counts what it is given and keeps nothing (a recording handler would itself grow with the flood).
class CountingHandler final : public MessageHandler {
 public:
  void on_message(const Inbound& in, Network&) override {
    messages.fetch_add(1, std::memory_order_relaxed);
    if (in.registered) registered.fetch_add(1, std::memory_order_relaxed);
  }
  void on_flow_closed(const FlowKey&) override { closed.fetch_add(1, std::memory_order_relaxed); }
  std::atomic<std::uint64_t> messages{0}, registered{0}, closed{0};
};

// Resident set size of this process, in bytes (/proc/self/statm, second field).
std::size_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  f >> size >> resident;
  if (!f) throw std::runtime_error("cannot read /proc/self/statm");
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

constexpr std::size_t kMaxFlows = 2'000;
constexpr int kPorts = 50'000;
constexpr int kRounds = 4;  // 4 x 50,000 = 200,000 datagrams
// The documented bound (docs/security.md): the flood grows RSS by less than this once the table is
// full (the table size itself is asserted exactly: without the bound it would reach 50,000 flows).
constexpr std::size_t kRssBound = 12u << 20;
// AddressSanitizer keeps freed memory in its quarantine (256 MiB by default) on purpose, so RSS says
// nothing about the table there: the RSS bound is asserted in the regular build of this same test,
// the table size, evictions and the registered flow in both.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssMeaningful = false;
#else
constexpr bool kRssMeaningful = true;
#endif

class UdpFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cfg = test_config({listen(Transport::udp)});
    cfg.limits.max_udp_flows = kMaxFlows;
    cfg.limits.idle_timeout = 600s;  // only eviction may remove a flow during the test
    handler = std::make_shared<CountingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
    server = {asio::ip::make_address("127.0.0.1"), tr->port(Transport::udp)};
  }
  FlowKey key_of(const udp::socket& s) const {
    const auto l = s.local_endpoint();
    return {Transport::udp, *flow::Endpoint::parse("127.0.0.1", server.port()),
            *flow::Endpoint::parse(l.address().to_string(), l.port())};
  }
  // One datagram from each port in [first, first + n) (ports the OS refuses are skipped); waits, bounded,
  // until the edge has read what arrived, so the socket buffer does not silently drop the flood.
  std::uint64_t flood_from_ports(int first, int n) {
    const std::string msg = sip_request("OPTIONS", "flood");
    const std::uint64_t base = read_so_far();
    std::uint64_t sent = 0;
    for (int p = first; p < first + n; ++p) {
      udp::socket s(io);
      boost::system::error_code ec;
      s.open(udp::v4(), ec);
      if (!ec) s.bind(udp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(p)), ec);
      if (!ec) s.send_to(asio::buffer(msg), server, 0, ec);
      if (!ec) ++sent;
      // 100 datagrams (about 40 KB) at a time: far below the socket buffer, also when the reader is
      // slow (a sanitizer build on a loaded machine).
      if (sent % 100 == 0) settle(base + sent);
    }
    settle(base + sent);
    return sent;
  }
  std::uint64_t read_so_far() const {
    return tr->stats().of(Transport::udp).messages_in + tr->stats().udp_flows_refused;
  }
  // Until the edge has read `target` datagrams in all, or has read nothing more for 50 ms
  // (bounded: at most 5 s per call).
  void settle(std::uint64_t target) {
    std::uint64_t last = read_so_far();
    for (int i = 0, idle = 0; i < 2500 && last < target && idle < 25; ++i) {
      std::this_thread::sleep_for(2ms);
      const auto now = read_so_far();
      idle = now == last ? idle + 1 : 0;
      last = now;
    }
  }

  asio::io_context io;
  std::shared_ptr<CountingHandler> handler;
  std::unique_ptr<Transports> tr;
  udp::endpoint server;
};

TEST_F(UdpFloodTest, AFloodFromFiftyThousandPortsStaysBoundedAndRegisteredFlowsAreUntouched) {
  // A registered client, heard from before the flood and silent during it.
  udp::socket client(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  client.send_to(asio::buffer(sip_request("REGISTER", "registered-client")), server);
  ASSERT_TRUE(eventually([&] { return tr->flow_alive(key_of(client)); }));
  const FlowKey reg = key_of(client);
  tr->mark_registered(reg, 30s);

  // Warm-up: fill the table to its bound once, so allocator and table growth are paid before the
  // baseline, then measure the rest of the flood against it.
  const int first_port = 10'000;
  std::uint64_t sent = flood_from_ports(first_port, static_cast<int>(kMaxFlows) * 2);
  const std::size_t rss_before = rss_bytes();
  for (int round = 0; round < kRounds; ++round) {
    const int from = round == 0 ? first_port + static_cast<int>(kMaxFlows) * 2 : first_port;
    const int n = round == 0 ? kPorts - static_cast<int>(kMaxFlows) * 2 : kPorts;
    sent += flood_from_ports(from, n);
    EXPECT_LE(tr->stats().flows_now[static_cast<std::size_t>(Transport::udp)], kMaxFlows);
  }
  const std::size_t rss_after = rss_bytes();
  const auto s = tr->stats();
  const auto& udp_c = s.of(Transport::udp);
  // The flood was real: (nearly) 200,000 datagrams arrived and churned through the table.
  EXPECT_GE(sent, 190'000u);
  EXPECT_GE(udp_c.messages_in, 150'000u);
  EXPECT_GE(s.udp_flow_evictions, 100'000u);
  EXPECT_LE(s.flows_now[static_cast<std::size_t>(Transport::udp)], kMaxFlows);
  EXPECT_EQ(s.udp_flows_refused, 0u);  // room was always made by evicting an unregistered flow
  if (kRssMeaningful) {
    EXPECT_LT(rss_after - std::min(rss_after, rss_before), kRssBound)
        << "RSS " << rss_before << " -> " << rss_after << " bytes";
  }
  RecordProperty("rss_delta_bytes", std::to_string(rss_after - std::min(rss_after, rss_before)));

  // The registered client kept its flow: the edge still routes to it, and its next message arrives on it.
  ASSERT_TRUE(tr->flow_alive(reg));
  ASSERT_TRUE(tr->send_to_flow(reg, "to-the-registered-client"));
  std::array<char, 256> buf{};
  udp::endpoint from;
  auto r = run_op(io, [&](OpHandler h) { client.async_receive_from(asio::buffer(buf), from, h); });
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(std::string(buf.data(), r.n), "to-the-registered-client");
  const auto registered_before = handler->registered.load();
  client.send_to(asio::buffer(sip_request("OPTIONS", "still-registered")), server);
  EXPECT_TRUE(eventually([&] { return handler->registered.load() > registered_before; }));
}

TEST_F(UdpFloodTest, WhenRegisteredFlowsFillTheTableANewSourceGetsNoFlowAndNoneIsEvicted) {
  std::vector<std::unique_ptr<udp::socket>> clients;
  // Fill the table with registered flows only (one at a time: a REGISTER the socket buffer dropped
  // is sent again, at most three times).
  for (std::size_t i = 0; i < kMaxFlows; ++i) {
    auto c = std::make_unique<udp::socket>(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    bool alive = false;
    for (int attempt = 0; attempt < 3 && !alive; ++attempt) {
      c->send_to(asio::buffer(sip_request("REGISTER", "r" + std::to_string(i))), server);
      alive = eventually([&] { return tr->flow_alive(key_of(*c)); }, 1s);
    }
    ASSERT_TRUE(alive) << "client " << i;
    tr->mark_registered(key_of(*c), 30s);
    clients.push_back(std::move(c));
  }
  udp::socket stranger(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  stranger.send_to(asio::buffer(sip_request("OPTIONS", "stranger")), server);
  ASSERT_TRUE(eventually([&] { return tr->stats().udp_flows_refused == 1u; }));
  EXPECT_FALSE(tr->flow_alive(key_of(stranger)));
  EXPECT_EQ(tr->stats().udp_flow_evictions, 0u);
  for (const auto& c : clients) EXPECT_TRUE(tr->flow_alive(key_of(*c)));
}

}  // namespace
}  // namespace edge::net::test
