// Several cores (issue 17): the core list's priority and weight, OPTIONS health checks, failover to the
// next healthy core and back, responses to the core their Via names, and traffic from any configured core
// counted as the core's. The cores are scripted peers on loopback that answer (or stop answering) OPTIONS.
#include "transport_test_support.h"

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

namespace edge::net::test {
namespace {

using flow::Transport;

// The header lines of `m` named `name` ("Via"), each with its CRLF.
std::string header_lines(const std::string& m, const std::string& name) {
  std::string out;
  std::size_t p = 0;
  while ((p = m.find("\r\n" + name + ":", p)) != std::string::npos) {
    const auto e = m.find("\r\n", p + 2);
    out += m.substr(p + 2, e - p);
    p = e;
  }
  return out;
}

std::string answer_to(const std::string& req, int status) {
  return "SIP/2.0 " + std::to_string(status) + " Scripted\r\n" + header_lines(req, "Via") +
         header_lines(req, "From") + header_lines(req, "To") + header_lines(req, "Call-ID") +
         header_lines(req, "CSeq") + "Content-Length: 0\r\n\r\n";
}

bool is_health_check(const std::string& m) {
  return m.rfind("OPTIONS ", 0) == 0 && m.find("branch=z9hG4bK-edge-health-") != std::string::npos;
}

// A core on loopback (TCP or UDP) run by a thread of its own: it answers the
// edge's health OPTIONS with `status` while `answer` is set (0: silence) and
// keeps every other message it receives.
class ScriptedCore {
 public:
  explicit ScriptedCore(Transport t) : t_(t), acc_(io_), udp_(io_) {
    const auto any = asio::ip::make_address("127.0.0.1");
    if (t_ == Transport::udp) {
      udp_.open(udp::v4());
      udp_.bind({any, 0});
      port = udp_.local_endpoint().port();
      read_udp();
    } else {
      acc_.open(tcp::v4());
      acc_.set_option(asio::socket_base::reuse_address(true));
      acc_.bind({any, 0});
      acc_.listen();
      port = acc_.local_endpoint().port();
      accept();
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ScriptedCore() {
    asio::post(io_, [this] { close_all(); });
    io_.stop();
    thread_.join();
  }
  // The core dies: its connections reset, nothing accepts any more (TCP).
  void kill() {
    std::promise<void> done;
    asio::post(io_, [this, &done] {
      close_all();
      done.set_value();
    });
    done.get_future().wait();
  }
  // Writes `m` to the edge: on the last connection it accepted, or (UDP) to `to`.
  void send(const std::string& m, const udp::endpoint& to = {}) {
    std::promise<void> done;
    asio::post(io_, [this, m, to, &done] {
      boost::system::error_code ec;
      if (t_ == Transport::udp) {
        udp_.send_to(asio::buffer(m), to, 0, ec);
      } else if (!conns_.empty()) {
        asio::write(conns_.back()->s, asio::buffer(m), ec);
      }
      done.set_value();
    });
    done.get_future().wait();
  }
  // Messages other than health checks whose Call-ID is `call_id`.
  std::size_t got(const std::string& call_id) const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& m : messages_) n += m.find("Call-ID: " + call_id + "\r\n") != std::string::npos ? 1 : 0;
    return n;
  }
  // Of those, the ones that also contain `text`.
  std::size_t got_with(const std::string& call_id, const std::string& text) const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& m : messages_)
      n += m.find("Call-ID: " + call_id + "\r\n") != std::string::npos && m.find(text) != std::string::npos
               ? 1
               : 0;
    return n;
  }
  std::size_t health_checks() const { return checks_.load(); }

  std::atomic<int> answer{200};
  std::uint16_t port = 0;

 private:
  struct Conn {
    explicit Conn(asio::io_context& io) : s(io) {}
    tcp::socket s;
    std::string buf;
    std::array<char, 8192> chunk{};
  };

  void close_all() {
    boost::system::error_code ec;
    acc_.close(ec);
    for (auto& c : conns_) {
      c->s.set_option(asio::socket_base::linger(true, 0), ec);
      c->s.close(ec);
    }
    conns_.clear();
  }
  void accept() {
    auto c = std::make_shared<Conn>(io_);
    acc_.async_accept(c->s, [this, c](const boost::system::error_code& ec) {
      if (ec) return;
      conns_.push_back(c);
      read(c);
      accept();
    });
  }
  void read(const std::shared_ptr<Conn>& c) {
    c->s.async_read_some(
        asio::buffer(c->chunk), [this, c](const boost::system::error_code& ec, std::size_t n) {
          if (ec) return;
          c->buf.append(c->chunk.data(), n);
          for (;;) {
            while (c->buf.rfind("\r\n", 0) == 0) c->buf.erase(0, 2);
            const auto end = c->buf.find("\r\n\r\n");
            if (end == std::string::npos) break;
            std::size_t body = 0;
            if (const auto cl = c->buf.find("Content-Length: "); cl != std::string::npos && cl < end)
              body = std::stoul(c->buf.substr(cl + 16));
            if (c->buf.size() < end + 4 + body) break;
            const std::string m = c->buf.substr(0, end + 4 + body);
            c->buf.erase(0, m.size());
            if (const auto a = on_message(m); !a.empty()) {
              boost::system::error_code wec;
              asio::write(c->s, asio::buffer(a), wec);
            }
          }
          read(c);
        });
  }
  void read_udp() {
    udp_.async_receive_from(asio::buffer(dgram_), from_,
                            [this](const boost::system::error_code& ec, std::size_t n) {
                              if (ec) return;
                              if (const auto a = on_message(std::string(dgram_.data(), n)); !a.empty()) {
                                boost::system::error_code wec;
                                udp_.send_to(asio::buffer(a), from_, 0, wec);
                              }
                              read_udp();
                            });
  }
  std::string on_message(const std::string& m) {
    if (is_health_check(m)) {
      checks_.fetch_add(1);
      const int status = answer.load();
      return status == 0 ? std::string() : answer_to(m, status);
    }
    std::lock_guard lock(mu_);
    messages_.push_back(m);
    return {};
  }

  Transport t_;
  asio::io_context io_;
  tcp::acceptor acc_;
  udp::socket udp_;
  std::array<char, 65536> dgram_{};
  udp::endpoint from_;
  std::vector<std::shared_ptr<Conn>> conns_;
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
  std::atomic<std::size_t> checks_{0};
  std::thread thread_;
};

class CoresTest : public ::testing::Test {
 protected:
  // targets: {port, priority, weight} of each core, all of transport t.
  void start(Transport t, const std::vector<std::array<std::uint32_t, 3>>& targets,
             const std::function<void(CoreConfig&)>& tweak = {}) {
    auto cfg = test_config({listen(Transport::tcp), listen(Transport::udp)});
    cfg.core.enabled = true;
    cfg.core.transport = t;
    cfg.core.port = static_cast<std::uint16_t>(targets.front()[0]);
    for (const auto& [port, prio, weight] : targets) {
      cfg.core.targets.push_back({t, "127.0.0.1", static_cast<std::uint16_t>(port), prio, weight});
    }
    cfg.core.reconnect_initial = 20ms;
    cfg.core.reconnect_max = 100ms;
    cfg.core.keepalive_interval = 0ms;  // the scripted cores answer no CRLF pings
    cfg.core.health_interval = 50ms;
    cfg.core.health_failures = 2;
    if (tweak) tweak(cfg.core);
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  CoreState state(std::size_t i) const { return tr->stats().cores.at(i).state; }
  bool becomes(std::size_t i, CoreState s, ms t = 5s) {
    return eventually([&] { return state(i) == s; }, t);
  }
  // Sends a new request with Call-ID `id` and says which core got it (its index), or -1.
  int route(const std::string& id, std::vector<ScriptedCore*> cores) {
    if (!tr->send_to_core(sip_request("INVITE", id))) return -1;
    int at = -1;
    eventually([&] {
      for (std::size_t i = 0; i < cores.size(); ++i)
        if (cores[i]->got(id) > 0) at = static_cast<int>(i);
      return at >= 0;
    });
    return at;
  }

  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

// Priority 1 is preferred while it answers its health checks; when it stops
// answering (health_failures in a row) new requests go to priority 2, and back
// to 1 once it answers again. Each step is an ordering of events, not a time.
TEST_F(CoresTest, NewRequestsGoToTheBestHealthyCoreFailOverAndFailBack) {
  ScriptedCore a(Transport::tcp), b(Transport::tcp);
  start(Transport::tcp, {{a.port, 1, 1}, {b.port, 2, 1}});
  ASSERT_TRUE(becomes(0, CoreState::up));
  ASSERT_TRUE(becomes(1, CoreState::up));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(route("first-" + std::to_string(i), {&a, &b}), 0);

  a.answer = 0;  // a black hole for OPTIONS: its connection stays up
  ASSERT_TRUE(becomes(0, CoreState::down));
  EXPECT_TRUE(tr->stats().cores[0].link_up);
  EXPECT_NE(tr->stats().cores[0].last_error.find("OPTIONS unanswered"), std::string::npos)
      << tr->stats().cores[0].last_error;
  EXPECT_GE(tr->stats().cores[0].health_failures, 2u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(route("failover-" + std::to_string(i), {&a, &b}), 1);

  a.answer = 200;
  ASSERT_TRUE(becomes(0, CoreState::up));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(route("back-" + std::to_string(i), {&a, &b}), 0);
  const CoreStats s0 = tr->stats().cores[0];
  EXPECT_EQ(s0.requests, 10u);
  EXPECT_EQ(tr->stats().cores[1].requests, 5u);
  EXPECT_EQ(s0.disconnects, 0u);
}

// A core whose link breaks (a killed process: its connections reset) is down at
// once, without waiting for health checks; answering 503 marks it down too.
TEST_F(CoresTest, AKilledCoreIsDownAtOnceAndA503AnswerCountsAsAFailedCheck) {
  ScriptedCore a(Transport::tcp), b(Transport::tcp);
  start(Transport::tcp, {{a.port, 1, 1}, {b.port, 2, 1}}, [](CoreConfig& c) { c.health_interval = 10s; });
  ASSERT_TRUE(becomes(0, CoreState::up));  // the first OPTIONS goes when the link comes up
  ASSERT_TRUE(becomes(1, CoreState::up));
  a.kill();
  ASSERT_TRUE(becomes(0, CoreState::down, 2s)) << "far less than one 10 s health interval";
  EXPECT_EQ(route("after-kill", {&a, &b}), 1);
  EXPECT_FALSE(tr->stats().cores[0].last_error.empty());

  b.answer = 503;  // health_failures = 2 answers of 503 in a row
  tr.reset();
  start(Transport::tcp, {{b.port, 1, 1}}, [](CoreConfig& c) {
    c.health_interval = 50ms;
    c.health_failures = 2;
  });
  ASSERT_TRUE(becomes(0, CoreState::down));
  EXPECT_TRUE(tr->stats().cores[0].link_up);
  EXPECT_NE(tr->stats().cores[0].last_error.find("OPTIONS answered 503"), std::string::npos);
  EXPECT_FALSE(tr->send_to_core(sip_request("INVITE", "to-a-503-core")));  // RFC 3261 §16.9: 503 at once
}

// No core up: send_to_core refuses at once (the proxy answers 503 with Retry-After).
TEST_F(CoresTest, WithNoHealthyCoreRequestsAreRefusedAtOnce) {
  ScriptedCore a(Transport::tcp), b(Transport::tcp);
  a.answer = 0;
  b.answer = 0;
  start(Transport::tcp, {{a.port, 1, 1}, {b.port, 2, 1}});
  ASSERT_TRUE(becomes(0, CoreState::down));
  ASSERT_TRUE(becomes(1, CoreState::down));
  const auto before = tr->stats().core_refused_down;
  EXPECT_FALSE(tr->send_to_core(sip_request("INVITE", "nobody")));
  EXPECT_EQ(tr->stats().core_refused_down, before + 1);
  b.answer = 200;
  ASSERT_TRUE(becomes(1, CoreState::up));
  EXPECT_EQ(route("somebody", {&a, &b}), 1);
}

// Among cores of the best priority a request goes by weight, chosen by its
// Call-ID: every request of one Call-ID (INVITE, CANCEL, ACK, BYE) to the same core.
TEST_F(CoresTest, WeightSharesRequestsAmongEqualPrioritiesAndACallIdSticks) {
  ScriptedCore a(Transport::tcp), b(Transport::tcp), c(Transport::tcp);
  start(Transport::tcp, {{a.port, 1, 1}, {b.port, 1, 3}, {c.port, 2, 100}});
  for (std::size_t i = 0; i < 3; ++i) ASSERT_TRUE(becomes(i, CoreState::up));
  constexpr int kCalls = 200;
  for (int i = 0; i < kCalls; ++i)
    ASSERT_TRUE(tr->send_to_core(sip_request("INVITE", "w-" + std::to_string(i))));
  ASSERT_TRUE(eventually(
      [&] { return tr->stats().cores[0].messages_out + tr->stats().cores[1].messages_out == kCalls; }));
  const auto s = tr->stats();
  EXPECT_EQ(s.cores[2].requests, 0u) << "priority 2 while priority 1 is healthy";
  EXPECT_GT(s.cores[0].requests, 0u);
  EXPECT_GT(s.cores[1].requests, s.cores[0].requests) << "weight 3 against weight 1";
  for (int i = 0; i < 20; ++i) {
    const std::string id = "w-" + std::to_string(i);
    const int first = a.got(id) > 0 ? 0 : 1;
    ASSERT_TRUE(tr->send_to_core(sip_request("CANCEL", id)));
    ASSERT_TRUE(eventually([&] { return (first == 0 ? a : b).got(id) == 2; })) << id;
    EXPECT_EQ((first == 0 ? b : a).got(id), 0u) << id;
  }
}

// A response toward the core goes to the core its top Via names (RFC 3261
// §18.2.2: the one that sent the request), not to the preferred one; and what
// any configured core sends is the core's (Inbound::from_core).
TEST_F(CoresTest, AResponseGoesToTheCoreItsViaNamesAndEveryCoreIsFromTheCore) {
  ScriptedCore a(Transport::tcp), b(Transport::tcp);
  start(Transport::tcp, {{a.port, 1, 1}, {b.port, 2, 1}});
  ASSERT_TRUE(becomes(0, CoreState::up));
  ASSERT_TRUE(becomes(1, CoreState::up));
  std::string req = sip_request("INVITE", "from-b");
  req.replace(req.find("127.0.0.1:5099"), 14, "127.0.0.1:" + std::to_string(b.port));
  b.send(req);
  ASSERT_TRUE(handler->wait_messages(1));
  const auto m = handler->messages()[0];
  EXPECT_TRUE(m.from_core);
  EXPECT_EQ(m.flow.remote.port, b.port);
  ASSERT_TRUE(tr->send_to_core(answer_to(req, 180)));
  ASSERT_TRUE(eventually([&] { return b.got("from-b") == 1; }));
  EXPECT_EQ(a.got("from-b"), 0u);
}

// UDP cores: health checks go from the UDP listener and their answers come back
// there, where they are taken (never handed to the proxy); a black-holed UDP
// core fails over; datagrams from either core are the core's.
TEST_F(CoresTest, UdpCoresAreHealthCheckedFromTheListenerAndFailOver) {
  ScriptedCore a(Transport::udp), b(Transport::udp);
  start(Transport::udp, {{a.port, 1, 1}, {b.port, 2, 1}});
  ASSERT_TRUE(becomes(0, CoreState::up));
  ASSERT_TRUE(becomes(1, CoreState::up));
  EXPECT_EQ(route("udp-1", {&a, &b}), 0);
  a.answer = 0;
  ASSERT_TRUE(becomes(0, CoreState::down));
  EXPECT_EQ(route("udp-2", {&a, &b}), 1);
  EXPECT_GT(a.health_checks(), 2u);
  EXPECT_TRUE(handler->messages().empty()) << "a health check answer reached the handler";

  const udp::endpoint edge(asio::ip::make_address("127.0.0.1"), tr->port(Transport::udp));
  a.send(sip_request("NOTIFY", "from-a"), edge);
  b.send(sip_request("NOTIFY", "from-b"), edge);
  ASSERT_TRUE(handler->wait_messages(2));
  for (const auto& m : handler->messages()) EXPECT_TRUE(m.from_core) << m.bytes;
  EXPECT_EQ(tr->stats().cores[0].messages_in, 1u);
  EXPECT_EQ(tr->stats().cores[1].messages_in, 1u);
}

// One core (the single-URI form) with health checks: still up at once while
// probing (the first OPTIONS is under way), and down, refusing, when checks fail.
TEST_F(CoresTest, OneCoreWithHealthChecksRefusesOnlyWhenItsChecksFail) {
  ScriptedCore a(Transport::tcp);
  a.answer = 0;
  start(Transport::tcp, {{a.port, 1, 1}}, [](CoreConfig& c) {
    c.targets.clear();
    c.health_interval = 200ms;
  });
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
  EXPECT_TRUE(tr->send_to_core(sip_request("INVITE", "while-probing")));
  ASSERT_TRUE(eventually([&] { return a.got("while-probing") == 1; }));
  ASSERT_TRUE(becomes(0, CoreState::down));
  EXPECT_FALSE(tr->send_to_core(sip_request("INVITE", "checks-failed")));
  a.answer = 200;
  ASSERT_TRUE(becomes(0, CoreState::up));
  EXPECT_TRUE(tr->send_to_core(sip_request("INVITE", "checks-pass")));
}

// RFC 3261 §18.1.1: beside a UDP core, a request above 1300 bytes goes to a
// reliable (TCP) core when one is healthy, its top Via saying TCP; smaller
// ones stay on UDP; with the TCP core down the large one goes over UDP.
TEST_F(CoresTest, ARequestAbove1300BytesGoesToAReliableCoreBesideAUdpOne) {
  ScriptedCore u(Transport::udp), t(Transport::tcp);
  start(Transport::udp, {{u.port, 1, 1}}, [&](CoreConfig& c) {
    c.targets.push_back({Transport::tcp, "127.0.0.1", t.port, 2, 1});
  });
  ASSERT_TRUE(becomes(0, CoreState::up));
  ASSERT_TRUE(becomes(1, CoreState::up));
  const auto udp_request = [](const std::string& id, std::size_t body) {
    std::string m = sip_request("MESSAGE", id, std::string(body, 'b'));
    m.replace(m.find("SIP/2.0/TCP"), 11, "SIP/2.0/UDP");
    return m;
  };
  ASSERT_TRUE(tr->send_to_core(udp_request("small", 100)));
  ASSERT_TRUE(eventually([&] { return u.got("small") == 1; }));
  const std::string big = udp_request("big", 1500);
  ASSERT_GT(big.size(), 1300u);
  ASSERT_TRUE(tr->send_to_core(big));
  ASSERT_TRUE(eventually([&] { return t.got("big") == 1; }));
  EXPECT_EQ(u.got("big"), 0u);
  EXPECT_EQ(t.got_with("big", "Via: SIP/2.0/TCP 127.0.0.1:5099;"), 1u) << "the Via still says UDP";

  t.kill();
  ASSERT_TRUE(becomes(1, CoreState::down));
  ASSERT_TRUE(tr->send_to_core(udp_request("big-2", 1500)));
  ASSERT_TRUE(eventually([&] { return u.got("big-2") == 1; })) << "no reliable core: UDP after all";
}

}  // namespace
}  // namespace edge::net::test
