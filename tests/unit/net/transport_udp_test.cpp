// UDP transport: SIP delivery (IPv4/IPv6), STUN Binding answers, CRLF keep-alives, garbage, size limit, flow expiry.
#include "transport_test_support.h"

#include "edge/net/sip/stun.h"

#include <random>

namespace edge::net::test {
namespace {

using flow::Transport;
namespace stun = edge::sip::stun;

class UdpClient {
 public:
  explicit UdpClient(const std::string& addr) : s(io, udp::endpoint(asio::ip::make_address(addr), 0)) {}
  void send_to(std::string_view data, const udp::endpoint& to) { s.send_to(asio::buffer(data.data(), data.size()), to); }
  // One datagram, or false on timeout.
  bool receive(std::string& out, ms t = 2s) {
    std::array<char, 65536> buf{};
    udp::endpoint from;
    auto r = run_op(io, [&](OpHandler h) { s.async_receive_from(asio::buffer(buf), from, h); }, t);
    if (r.ec) {
      boost::system::error_code ec;
      s.cancel(ec);
      io.restart();
      io.run_for(20ms);
      return false;
    }
    out.assign(buf.data(), r.n);
    return true;
  }
  flow::Endpoint endpoint() const {
    const auto l = s.local_endpoint();
    return *flow::Endpoint::parse(l.address().to_string(), l.port());
  }
  asio::io_context io;
  udp::socket s;
};

class UdpTest : public ::testing::Test {
 protected:
  void start(TransportConfig cfg) {
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  void start() { start(test_config({listen(Transport::udp), listen(Transport::udp, "::1")})); }
  udp::endpoint v4() const { return {asio::ip::make_address("127.0.0.1"), tr->port(Transport::udp)}; }
  udp::endpoint v6() const {
    return {asio::ip::make_address("::1"), tr->port(Transport::udp, flow::Family::ipv6)};
  }
  FlowKey key_of(UdpClient& c, const udp::endpoint& server) const {
    return {Transport::udp, *flow::Endpoint::parse(server.address().to_string(), server.port()), c.endpoint()};
  }

  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

std::string binding_request(stun::TransactionId& id) {
  std::mt19937 rng(std::random_device{}());
  for (auto& b : id) b = static_cast<std::uint8_t>(rng());
  std::string r(20, '\0');
  r[1] = 0x01;  // Binding request, length 0
  r[4] = 0x21;
  r[5] = 0x12;
  r[6] = static_cast<char>(0xA4);
  r[7] = 0x42;
  std::copy(id.begin(), id.end(), r.begin() + 8);
  return r;
}

TEST_F(UdpTest, DeliversSipDatagramsOnIpv4AndIpv6WithTheirFlowKey) {
  start();
  UdpClient a("127.0.0.1"), b("::1");
  a.send_to(sip_request("OPTIONS", "u4"), v4());
  b.send_to(sip_request("OPTIONS", "u6"), v6());
  ASSERT_TRUE(handler->wait_messages(2));
  for (const auto& m : handler->messages()) {
    if (m.flow.remote.family == flow::Family::ipv4) {
      EXPECT_EQ(m.flow, key_of(a, v4()));
      EXPECT_NE(m.bytes.find("Call-ID: u4"), std::string::npos);
    } else {
      EXPECT_EQ(m.flow, key_of(b, v6()));
      EXPECT_NE(m.bytes.find("Call-ID: u6"), std::string::npos);
    }
  }
  EXPECT_TRUE(tr->flow_alive(key_of(a, v4())));
  EXPECT_EQ(tr->stats().flows_now[static_cast<int>(Transport::udp)], 2u);
}

TEST_F(UdpTest, SendToFlowReachesTheClientFromTheListenerPort) {
  start();
  UdpClient a("127.0.0.1"), other("127.0.0.1");
  a.send_to(sip_request("REGISTER", "r"), v4());
  other.send_to(sip_request("REGISTER", "o"), v4());
  ASSERT_TRUE(handler->wait_messages(2));
  ASSERT_TRUE(tr->send_to_flow(key_of(a, v4()), "to-a"));
  std::string got;
  ASSERT_TRUE(a.receive(got));
  EXPECT_EQ(got, "to-a");
  EXPECT_FALSE(other.receive(got, 200ms));
}

TEST_F(UdpTest, StunBindingIsAnsweredWithTheClientsAddress) {
  start();
  for (const bool six : {false, true}) {
    UdpClient c(six ? "::1" : "127.0.0.1");
    c.send_to(sip_request("REGISTER", six ? "s6" : "s4"), six ? v6() : v4());  // the source has a flow
    ASSERT_TRUE(handler->wait_messages(six ? 2 : 1));
    stun::TransactionId id{};
    c.send_to(binding_request(id), six ? v6() : v4());
    std::string got;
    ASSERT_TRUE(c.receive(got)) << "ipv6=" << six;
    stun::Message m;
    ASSERT_EQ(stun::decode({reinterpret_cast<const std::uint8_t*>(got.data()), got.size()}, m), stun::Error::ok);
    EXPECT_EQ(m.type, stun::kBindingSuccess);
    EXPECT_EQ(m.transaction_id, id);
    ASSERT_TRUE(m.has_xor_mapped_address);
    const flow::Endpoint me = c.endpoint();
    EXPECT_EQ(m.xor_mapped_address.ipv6, six);
    EXPECT_EQ(m.xor_mapped_address.port, me.port);
    EXPECT_TRUE(std::equal(me.address_bytes().begin(), me.address_bytes().end(), m.xor_mapped_address.address.begin()));
  }
  EXPECT_EQ(handler->messages().size(), 2u);  // the two REGISTERs: STUN never reaches the proxy
  EXPECT_TRUE(eventually([&] { return tr->stats().of(Transport::udp).keepalive_answers == 2u; }));
  EXPECT_EQ(tr->stats().stun_unsolicited, 0u);
}

// No reflection: a Binding request from a source that never sent SIP on the port (or whose flow
// expired) gets no answer, so a spoofed source cannot make the edge send a larger response to a
// victim. Once the source sends SIP, the same request is answered.
TEST_F(UdpTest, StunFromASourceWithoutAFlowIsNotAnswered) {
  start();
  UdpClient c("127.0.0.1");
  stun::TransactionId id{};
  for (int i = 0; i < 3; ++i) c.send_to(binding_request(id), v4());
  std::string got;
  EXPECT_FALSE(c.receive(got, 300ms)) << "a source without a flow got a STUN answer";
  EXPECT_TRUE(eventually([&] { return tr->stats().stun_unsolicited == 3u; }));
  EXPECT_EQ(tr->stats().of(Transport::udp).keepalive_answers, 0u);
  EXPECT_EQ(tr->stats().flows_now[static_cast<int>(Transport::udp)], 0u) << "STUN opens no flow";

  c.send_to(sip_request("OPTIONS", "now-known"), v4());
  ASSERT_TRUE(handler->wait_messages(1));
  c.send_to(binding_request(id), v4());
  ASSERT_TRUE(c.receive(got));
  stun::Message m;
  ASSERT_EQ(stun::decode({reinterpret_cast<const std::uint8_t*>(got.data()), got.size()}, m), stun::Error::ok);
  EXPECT_EQ(m.type, stun::kBindingSuccess);
  EXPECT_EQ(m.transaction_id, id);
  EXPECT_EQ(tr->stats().stun_unsolicited, 3u);
}

TEST_F(UdpTest, CrlfKeepAliveRefreshesTheFlowWithoutAnAnswer) {
  start();
  UdpClient c("127.0.0.1");
  c.send_to(sip_request("REGISTER", "k"), v4());
  ASSERT_TRUE(handler->wait_messages(1));
  auto entry = tr->find_flow(key_of(c, v4()));
  ASSERT_NE(entry, nullptr);
  const auto before = entry->last_activity();
  std::this_thread::sleep_for(20ms);
  c.send_to("\r\n\r\n", v4());
  ASSERT_TRUE(eventually([&] { return entry->last_activity() > before; }));
  std::string got;
  EXPECT_FALSE(c.receive(got, 200ms));
  EXPECT_EQ(handler->messages().size(), 1u);
}

TEST_F(UdpTest, GarbageAndOversizedDatagramsAreDroppedAndCounted) {
  auto cfg = test_config({listen(Transport::udp)});
  cfg.limits.max_message_size = 1024;
  start(cfg);
  UdpClient c("127.0.0.1");
  c.send_to(std::string("\x80\x01garbage", 9), v4());
  c.send_to(sip_request("MESSAGE", "big", std::string(2000, 'x')), v4());
  c.send_to(sip_request("OPTIONS", "ok"), v4());
  ASSERT_TRUE(handler->wait_messages(1));
  EXPECT_TRUE(eventually([&] { return tr->stats().udp_garbage == 1 && tr->stats().oversized == 1; }));
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(handler->messages().size(), 1u);
  EXPECT_NE(handler->messages()[0].bytes.find("Call-ID: ok"), std::string::npos);
}

TEST_F(UdpTest, SilentUdpFlowExpiresAndIsReported) {
  auto cfg = test_config({listen(Transport::udp)});
  cfg.limits.idle_timeout = 200ms;
  start(cfg);
  UdpClient c("127.0.0.1");
  c.send_to(sip_request("OPTIONS", "x"), v4());
  ASSERT_TRUE(handler->wait_messages(1));
  const FlowKey k = key_of(c, v4());
  ASSERT_TRUE(handler->wait_closed(k, 3s));
  EXPECT_FALSE(tr->flow_alive(k));
  EXPECT_FALSE(tr->send_to_flow(k, "gone"));
  // The next datagram opens a new flow.
  c.send_to(sip_request("OPTIONS", "y"), v4());
  ASSERT_TRUE(handler->wait_messages(2));
  EXPECT_TRUE(tr->flow_alive(k));
}

// Issue 17: a UDP core is sent to from our UDP listener (the address in our Via),
// and a datagram from exactly the core's address and port there is the core's;
// another port on the core's host is a client.
TEST_F(UdpTest, AUdpCoreIsSentToFromTheListenerAndItsDatagramsThereAreTheCores) {
  UdpClient core("127.0.0.1"), neighbour("127.0.0.1");
  auto cfg = test_config({listen(Transport::udp)});
  cfg.core.enabled = true;
  cfg.core.transport = Transport::udp;
  cfg.core.address = "127.0.0.1";
  cfg.core.port = core.endpoint().port;
  start(std::move(cfg));
  const std::string out = sip_request("OPTIONS", "to-core");
  ASSERT_TRUE(tr->send_to_core(out));
  std::array<char, 4096> buf{};
  udp::endpoint from;
  auto r = run_op(core.io, [&](OpHandler h) { core.s.async_receive_from(asio::buffer(buf), from, h); });
  ASSERT_FALSE(r.ec);
  EXPECT_EQ(std::string(buf.data(), r.n), out);
  EXPECT_EQ(from.port(), v4().port()) << "sent from another socket than the UDP listener";
  EXPECT_EQ(tr->stats().core_messages_out, 1u);

  core.send_to(sip_request("NOTIFY", "from-core"), v4());
  neighbour.send_to(sip_request("NOTIFY", "from-neighbour"), v4());
  ASSERT_TRUE(handler->wait_messages(2));
  for (const auto& m : handler->messages()) {
    const bool is_core = m.bytes.find("Call-ID: from-core") != std::string::npos;
    EXPECT_EQ(m.from_core, is_core) << m.bytes;
    EXPECT_FALSE(m.core_address);
  }
}

// A TCP connection from the core's IP address is marked for the proxy
// (Inbound::core_address); one from another address is not.
TEST_F(UdpTest, ATcpConnectionFromTheCoresAddressIsMarked) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.core.enabled = true;
  cfg.core.transport = Transport::tcp;
  cfg.core.address = "127.0.0.2";
  cfg.core.port = 9;  // nothing listens: the core link retries, which does not matter here
  start(std::move(cfg));
  const tcp::endpoint edge = ep("127.0.0.1", tr->port(Transport::tcp));
  StreamClient<tcp::socket> core, client;
  core.s.open(tcp::v4());
  core.s.bind(ep("127.0.0.2", 0));
  ASSERT_TRUE(core.connect(edge));
  ASSERT_TRUE(core.write(sip_request("INVITE", "core-own")));
  ASSERT_TRUE(client.connect(edge));
  ASSERT_TRUE(client.write(sip_request("INVITE", "client")));
  ASSERT_TRUE(handler->wait_messages(2));
  for (const auto& m : handler->messages()) {
    const bool from_core_ip = m.bytes.find("Call-ID: core-own") != std::string::npos;
    EXPECT_EQ(m.core_address, from_core_ip) << m.bytes;
    EXPECT_FALSE(m.from_core) << "the proxy decides, by the Via";
  }
}

}  // namespace
}  // namespace edge::net::test
