// TCP transport: delivery, CRLF pong, send_to_flow, flow close, timeouts, limits, framing errors,
// pause/resume.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;

class TcpTest : public ::testing::Test {
 protected:
  void start(TransportConfig cfg) {
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  void start() { start(test_config({listen(Transport::tcp), listen(Transport::tcp, "::1")})); }
  tcp::endpoint v4() const { return ep("127.0.0.1", tr->port(Transport::tcp)); }
  // The flow key the server sees for a client socket.
  FlowKey key_of(TcpClient& c) const {
    const auto l = c.local();
    const auto server = c.s.remote_endpoint();
    return {Transport::tcp, *flow::Endpoint::parse(server.address().to_string(), server.port()),
            *flow::Endpoint::parse(l.address().to_string(), l.port())};
  }

  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

TEST_F(TcpTest, ReportsBoundPortsAndDeliversAMessageOnIpv4AndIpv6) {
  start();
  ASSERT_NE(tr->port(Transport::tcp), 0);
  ASSERT_NE(tr->port(Transport::tcp, flow::Family::ipv6), 0);
  ASSERT_EQ(tr->listening().size(), 2u);

  TcpClient a, b;
  ASSERT_TRUE(a.connect(v4()));
  ASSERT_TRUE(b.connect(ep("::1", tr->port(Transport::tcp, flow::Family::ipv6))));
  ASSERT_TRUE(a.write(sip_request("OPTIONS", "c-v4")));
  ASSERT_TRUE(b.write(sip_request("OPTIONS", "c-v6")));
  ASSERT_TRUE(handler->wait_messages(2));
  auto msgs = handler->messages();
  int v6 = 0;
  for (const auto& m : msgs) {
    EXPECT_FALSE(m.from_core);
    EXPECT_EQ(m.flow.transport, Transport::tcp);
    if (m.flow.remote.family == flow::Family::ipv6) {
      ++v6;
      EXPECT_NE(m.bytes.find("Call-ID: c-v6"), std::string::npos);
      EXPECT_EQ(m.flow, key_of(b));
    } else {
      EXPECT_EQ(m.flow, key_of(a));
      EXPECT_NE(m.bytes.find("Call-ID: c-v4"), std::string::npos);
    }
  }
  EXPECT_EQ(v6, 1);
  EXPECT_TRUE(tr->flow_alive(key_of(a)));
  EXPECT_NE(tr->flow_token(key_of(a)), nullptr);
  EXPECT_EQ(tr->stats().of(Transport::tcp).messages_in, 2u);
}

TEST_F(TcpTest, SplitAndPipelinedMessagesAreFramedExactly) {
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  const std::string m1 = sip_request("MESSAGE", "one", "hello");
  const std::string m2 = sip_request("MESSAGE", "two", "world!");
  ASSERT_TRUE(c.write(m1.substr(0, 10)));
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(c.write(m1.substr(10) + m2));
  ASSERT_TRUE(handler->wait_messages(2));
  auto msgs = handler->messages();
  EXPECT_EQ(msgs[0].bytes, m1);
  EXPECT_EQ(msgs[1].bytes, m2);
}

TEST_F(TcpTest, ABodySplitAcrossReadsWithTheNextMessageBehindItIsFramedExactly) {
  // The second read brings the rest of the first body and a whole second
  // message: the framer must resume at the first message's header end.
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  const std::string m1 = sip_request("MESSAGE", "split-body", "a body of twenty-eight bytes");
  const std::string m2 = sip_request("MESSAGE", "behind", "next");
  const std::size_t cut = m1.size() - 10;  // inside the body
  ASSERT_TRUE(c.write(m1.substr(0, cut)));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(c.write(m1.substr(cut) + m2));
  ASSERT_TRUE(handler->wait_messages(2));
  auto msgs = handler->messages();
  EXPECT_EQ(msgs[0].bytes, m1);
  EXPECT_EQ(msgs[1].bytes, m2);
  EXPECT_FALSE(c.read_some(100ms));
  EXPECT_FALSE(c.closed);
  EXPECT_EQ(tr->stats().framing_errors, 0u);
}

TEST_F(TcpTest, CrlfCrlfPingGetsExactlyOneCrlfPong) {
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write("\r\n\r\n"));
  ASSERT_TRUE(c.read_until("\r\n", 2s));
  EXPECT_FALSE(c.read_some(200ms));  // nothing more
  EXPECT_EQ(c.inbox, "\r\n");
  EXPECT_EQ(tr->stats().of(Transport::tcp).keepalive_answers, 1u);
  EXPECT_TRUE(handler->messages().empty());
}

TEST_F(TcpTest, SendToFlowReachesExactlyThatConnection) {
  start();
  TcpClient a, b;
  ASSERT_TRUE(a.connect(v4()));
  ASSERT_TRUE(b.connect(v4()));
  ASSERT_TRUE(a.write(sip_request("REGISTER", "ra")));
  ASSERT_TRUE(b.write(sip_request("REGISTER", "rb")));
  ASSERT_TRUE(handler->wait_messages(2));
  ASSERT_TRUE(tr->send_to_flow(key_of(b), "for-b"));
  ASSERT_TRUE(b.read_until("for-b"));
  EXPECT_FALSE(a.read_some(200ms));
  EXPECT_TRUE(a.inbox.empty());
  EXPECT_EQ(b.inbox, "for-b");
}

TEST_F(TcpTest, AcceptedConnectionsSendWithoutNagle) {
  // A message must not wait for the client's delayed ACK of the previous one
  // (an ACK right behind a 200 OK, a BYE right behind an ACK).
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("REGISTER", "nd")));
  ASSERT_TRUE(handler->wait_messages(1));
  const int fd = socket_fd_between(c.s.remote_endpoint(), c.local());
  ASSERT_GE(fd, 0) << "the server side of the connection was not found";
  EXPECT_EQ(tcp_nodelay(fd), 1);
}

TEST_F(TcpTest, ABurstOfSendsToOneFlowArrivesWholeAndInOrder) {
  // Queued messages leave together (one gathered write); none may be lost,
  // reordered or counted twice.
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("REGISTER", "burst")));
  ASSERT_TRUE(handler->wait_messages(1));
  const auto before = tr->stats().of(Transport::tcp).messages_out;
  constexpr int kCount = 500;
  std::string expected;
  for (int i = 0; i < kCount; ++i) {
    std::string m = "message-" + std::to_string(i) + ";";
    expected += m;
    ASSERT_TRUE(tr->send_to_flow(key_of(c), std::move(m)));
  }
  ASSERT_TRUE(c.read_until("message-" + std::to_string(kCount - 1) + ";"));
  EXPECT_EQ(c.inbox, expected);
  for (int i = 0; i < 100 && tr->stats().of(Transport::tcp).messages_out < before + kCount; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(tr->stats().of(Transport::tcp).messages_out, before + kCount);
}

TEST_F(TcpTest, HandlerAnswersOnTheSameFlow) {
  start();
  handler->echo_prefix = "echo:";
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  const std::string m = sip_request("OPTIONS", "e1");
  ASSERT_TRUE(c.write(m));
  ASSERT_TRUE(c.read_until("echo:" + m));
}

TEST_F(TcpTest, ClosedConnectionKillsTheFlowAndNotifiesOnce) {
  start();
  FlowKey k;
  {
    TcpClient c;
    ASSERT_TRUE(c.connect(v4()));
    ASSERT_TRUE(c.write(sip_request("OPTIONS", "bye")));
    ASSERT_TRUE(handler->wait_messages(1));
    k = key_of(c);
    EXPECT_TRUE(tr->flow_alive(k));
  }  // client closes
  ASSERT_TRUE(handler->wait_closed(k));
  EXPECT_FALSE(tr->flow_alive(k));
  EXPECT_FALSE(tr->send_to_flow(k, "late"));
  EXPECT_EQ(tr->flow_token(k), nullptr);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(handler->closed_count(k), 1u);
  EXPECT_TRUE(eventually([&] { return tr->stats().connections_now == 0; }));
}

TEST_F(TcpTest, IdleTimeoutClosesASilentUnregisteredFlow) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.limits.idle_timeout = 300ms;
  start(cfg);
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("OPTIONS", "idle")));
  ASSERT_TRUE(handler->wait_messages(1));
  const FlowKey k = key_of(c);
  ASSERT_TRUE(c.wait_closed(3s));
  EXPECT_TRUE(handler->wait_closed(k));
  EXPECT_FALSE(tr->flow_alive(k));
  EXPECT_TRUE(eventually([&] { return tr->stats().idle_timeouts >= 1u; }));
}

TEST_F(TcpTest, RegisteredFlowOutlivesIdleTimeoutUntilFlowTimerPlusGrace) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.limits.idle_timeout = 200ms;
  cfg.limits.flow_timeout_grace = 300ms;
  start(cfg);
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("REGISTER", "reg")));
  ASSERT_TRUE(handler->wait_messages(1));
  const FlowKey k = key_of(c);
  tr->mark_registered(k, std::chrono::seconds(1));
  std::this_thread::sleep_for(600ms);  // past the idle timeout, inside Flow-Timer + grace
  EXPECT_TRUE(tr->flow_alive(k));
  ASSERT_TRUE(c.write("\r\n\r\n"));  // keep-alive refreshes it
  ASSERT_TRUE(c.read_until("\r\n"));
  std::this_thread::sleep_for(900ms);
  EXPECT_TRUE(tr->flow_alive(k));
  ASSERT_TRUE(c.wait_closed(4s));  // silent for 1 s + 300 ms
  EXPECT_TRUE(handler->wait_closed(k));
  EXPECT_TRUE(eventually([&] { return tr->stats().flow_timeouts >= 1u; }));
}

TEST_F(TcpTest, SlowlorisIsClosedAfterTheHeaderTimeout) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.limits.header_read_timeout = 300ms;
  start(cfg);
  TcpClient c, good;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(good.connect(v4()));
  ASSERT_TRUE(c.write("INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.wait_closed(3s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_TRUE(eventually([&] { return tr->stats().read_timeouts == 1u; })) << tr->stats().read_timeouts;
  // A connection with no message in progress is not subject to the read timeout.
  EXPECT_TRUE(tr->flow_alive(key_of(good)));
  EXPECT_TRUE(handler->messages().empty());
}

TEST_F(TcpTest, StalledBodyIsClosedAfterTheBodyTimeout) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.limits.body_read_timeout = 300ms;
  start(cfg);
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  const std::string m = sip_request("MESSAGE", "body", std::string(100, 'x'));
  ASSERT_TRUE(c.write(m.substr(0, m.size() - 50)));
  ASSERT_TRUE(c.wait_closed(3s));
  EXPECT_TRUE(eventually([&] { return tr->stats().read_timeouts == 1u; })) << tr->stats().read_timeouts;
}

TEST_F(TcpTest, MaxConnectionsRefusesTheNextConnection) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.limits.max_connections = 2;
  start(cfg);
  TcpClient a, b, c;
  ASSERT_TRUE(a.connect(v4()));
  ASSERT_TRUE(b.connect(v4()));
  ASSERT_TRUE(eventually([&] { return tr->stats().connections_now == 2; }));
  ASSERT_TRUE(c.connect(v4()));  // the kernel completes the handshake; we close at once
  EXPECT_TRUE(c.wait_closed(2s));
  EXPECT_TRUE(eventually([&] { return tr->stats().refused_max_connections == 1u; }))
      << tr->stats().refused_max_connections;
  // The admitted ones still work.
  ASSERT_TRUE(a.write(sip_request("OPTIONS", "still")));
  EXPECT_TRUE(handler->wait_messages(1));
}

TEST_F(TcpTest, PerAddressLimitRefusesButOtherAddressesGetIn) {
  auto cfg = test_config({listen(Transport::tcp, "0.0.0.0")});
  cfg.limits.max_per_source_address = 1;
  start(cfg);
  const auto port = tr->port(Transport::tcp);
  TcpClient a, b, other;
  ASSERT_TRUE(a.connect(ep("127.0.0.1", port)));
  ASSERT_TRUE(eventually([&] { return tr->stats().connections_now == 1; }));
  ASSERT_TRUE(b.connect(ep("127.0.0.1", port)));
  EXPECT_TRUE(b.wait_closed(2s));
  EXPECT_TRUE(eventually([&] { return tr->stats().refused_per_address == 1u; }))
      << tr->stats().refused_per_address;
  // Another loopback source address is a different client.
  other.s.open(tcp::v4());
  other.s.bind(ep("127.0.0.2", 0));
  ASSERT_TRUE(other.connect(ep("127.0.0.1", port)));
  ASSERT_TRUE(other.write(sip_request("OPTIONS", "other")));
  EXPECT_TRUE(handler->wait_messages(1));
  EXPECT_FALSE(other.closed);
}

TEST_F(TcpTest, OversizedMessageIsAnswered513AndClosed) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.limits.max_message_size = 2048;
  start(cfg);
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("MESSAGE", "big", std::string(4000, 'x'))));
  ASSERT_TRUE(c.wait_closed(3s));
  EXPECT_EQ(c.inbox.rfind("SIP/2.0 513 ", 0), 0u) << c.inbox;
  EXPECT_NE(c.inbox.find("Call-ID: big"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return tr->stats().oversized == 1u; })) << tr->stats().oversized;
  EXPECT_TRUE(handler->messages().empty());
}

TEST_F(TcpTest, FramingErrorIsAnswered400AndClosedWhileOtherFlowsKeepWorking) {
  start();
  TcpClient bad, good;
  ASSERT_TRUE(bad.connect(v4()));
  ASSERT_TRUE(good.connect(v4()));
  std::string broken = sip_request("OPTIONS", "broken");
  broken.replace(broken.find("Content-Length: 0"), 17, "Content-Length: x");
  ASSERT_TRUE(bad.write(broken));
  ASSERT_TRUE(bad.wait_closed(3s));
  EXPECT_EQ(bad.inbox.rfind("SIP/2.0 400 ", 0), 0u) << bad.inbox;
  EXPECT_TRUE(eventually([&] { return tr->stats().framing_errors == 1u; })) << tr->stats().framing_errors;
  ASSERT_TRUE(good.write(sip_request("OPTIONS", "fine")));
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_NE(handler->messages()[0].bytes.find("Call-ID: fine"), std::string::npos);

  TcpClient garbage;  // not even a start line: closed without an answer
  ASSERT_TRUE(garbage.connect(v4()));
  ASSERT_TRUE(garbage.write("\x16\x03\x01 binary"));
  ASSERT_TRUE(garbage.wait_closed(3s));
  EXPECT_TRUE(garbage.inbox.empty());
}

TEST_F(TcpTest, PauseHoldsMessagesAndKeepsConnectionsResumeDeliversThem) {
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("OPTIONS", "before")));
  ASSERT_TRUE(handler->wait_messages(1));
  tr->pause();
  ASSERT_TRUE(c.write(sip_request("OPTIONS", "during")));
  TcpClient late;  // listening sockets stay open while paused
  ASSERT_TRUE(late.connect(v4()));
  EXPECT_FALSE(handler->wait_messages(2, 300ms));
  // Swap the handler during the pause, as a controlled restart does.
  auto next = std::make_shared<RecordingHandler>();
  tr->set_handler(next);
  tr->resume();
  ASSERT_TRUE(next->wait_messages(1));
  EXPECT_NE(next->messages()[0].bytes.find("Call-ID: during"), std::string::npos);
  EXPECT_EQ(handler->messages().size(), 1u);
  EXPECT_FALSE(c.closed);
}

// Records like RecordingHandler, but a message containing "block-me" holds its
// worker thread inside on_message until release().
class GateHandler final : public MessageHandler {
 public:
  void on_message(const Inbound& in, Network&) override {
    const std::string bytes(in.bytes);
    std::unique_lock lock(mu_);
    messages_.push_back(bytes);
    cv_.notify_all();
    if (bytes.find("block-me") != std::string::npos) {
      blocked_ = true;
      cv_.notify_all();
      cv_.wait_for(lock, 10s, [&] { return released_; });
    }
  }
  void on_flow_closed(const FlowKey& flow) override {
    std::lock_guard lock(mu_);
    closed_.push_back(flow);
    cv_.notify_all();
  }
  bool wait_blocked() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return blocked_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool wait_message(std::string_view what, ms t = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, t, [&] {
      return std::any_of(messages_.begin(), messages_.end(),
                         [&](const std::string& m) { return m.find(what) != std::string::npos; });
    });
  }
  std::size_t closed_count(const FlowKey& k) {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(std::count(closed_.begin(), closed_.end(), k));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> messages_;
  std::vector<FlowKey> closed_;
  bool blocked_ = false, released_ = false;
};

TEST(TcpReuseTest, ANewConnectionReusingADeadFlowsFourTupleIsServed) {
  // A client resets its connection and reconnects from the same port before
  // the old flow's worker has read the reset: the kernel accepts the new
  // connection (no live socket has that 4-tuple any more), so the stale flow
  // must give way instead of the new connection being dropped.
  TransportConfig cfg = test_config({listen(Transport::tcp)});
  cfg.workers = 2;
  auto gate = std::make_shared<GateHandler>();
  Transports tr(cfg, gate);
  tr.start();
  const tcp::endpoint server = ep("127.0.0.1", tr.port(Transport::tcp));

  // The listener runs on worker 0; the first connection goes to worker 1 (ties
  // go round-robin), whose thread the gate then holds.
  TcpClient old_client;
  old_client.s.open(tcp::v4());
  old_client.s.set_option(asio::socket_base::reuse_address(true));
  old_client.s.bind(ep("127.0.0.1", 0));
  const tcp::endpoint local = old_client.local();
  ASSERT_TRUE(old_client.connect(server));
  const FlowKey key{Transport::tcp, *flow::Endpoint::parse("127.0.0.1", server.port()),
                    *flow::Endpoint::parse("127.0.0.1", local.port())};
  ASSERT_TRUE(old_client.write(sip_request("OPTIONS", "block-me")));
  ASSERT_TRUE(gate->wait_blocked());
  const auto old_entry = tr.find_flow(key);
  ASSERT_NE(old_entry, nullptr);

  // Reset (SO_LINGER 0: no TIME_WAIT) and reconnect from the same address and port.
  old_client.s.set_option(asio::socket_base::linger(true, 0));
  old_client.s.close();
  TcpClient next;
  next.s.open(tcp::v4());
  next.s.set_option(asio::socket_base::reuse_address(true));
  next.s.bind(local);
  ASSERT_TRUE(next.connect(server));
  ASSERT_TRUE(next.write(sip_request("OPTIONS", "hello-again")));
  // Worker 0 accepts it while worker 1 still holds the stale flow.
  for (int i = 0; i < 500 && tr.stats().superseded_flows == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(tr.stats().superseded_flows, 1u);

  gate->release();
  ASSERT_TRUE(gate->wait_message("hello-again")) << "the new connection was dropped";
  EXPECT_FALSE(next.read_some(200ms)) << "nothing is sent to the client";
  EXPECT_FALSE(next.closed);
  const auto now = tr.find_flow(key);
  ASSERT_NE(now, nullptr);
  EXPECT_NE(now, old_entry);
  EXPECT_EQ(gate->closed_count(key), 1u);  // the old flow, once
  EXPECT_TRUE(tr.flow_alive(key));
  EXPECT_NE(old_entry->worker, now->worker)
      << "the setup meant the new connection to open while the old worker was held";
  tr.stop();
}

TEST_F(TcpTest, StartFailsWithAClearReasonWhenThePortIsTaken) {
  start();
  const auto port = tr->port(Transport::tcp);
  TransportConfig cfg = test_config({{Transport::tcp, "127.0.0.1", port}});
  Transports second(cfg, std::make_shared<RecordingHandler>());
  try {
    second.start();
    FAIL() << "start() should have thrown";
  } catch (const TransportError& e) {
    EXPECT_EQ(std::string(e.what()), "tcp 127.0.0.1:" + std::to_string(port) + ": address in use");
  }
}

TEST_F(TcpTest, StopClosesFlowsAndNotifiesTheHandler) {
  start();
  TcpClient c;
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("OPTIONS", "stop")));
  ASSERT_TRUE(handler->wait_messages(1));
  const FlowKey k = key_of(c);
  tr->stop();
  EXPECT_EQ(handler->closed_count(k), 1u);
  EXPECT_FALSE(tr->flow_alive(k));
  EXPECT_TRUE(c.wait_closed(2s));
}

}  // namespace
}  // namespace edge::net::test
