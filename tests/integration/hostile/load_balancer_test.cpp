// Issue 16 "Behind a load balancer": a real HAProxy (mode tcp, send-proxy-v2 / send-proxy) in front of
// edged's PROXY protocol listeners. The client's address from the header names the flow (Via received,
// the Path token, per-source limits) while requests from the core still reach the client through the
// balancer's connection; forged and missing headers are refused and counted.
//
//   TestUa 127.0.0.2..  --> HAProxy 127.0.0.10:5090 (tcp) / :5091 (tls) / :5092 (tcp, v1)
//                           --source 127.0.0.10, PROXY header--> edged 127.0.0.1:5070 / :5071 proxy
#include <sys/types.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

constexpr const char* kBalancer = "127.0.0.10";
constexpr std::uint16_t kProxyTcp = 5070, kProxyTls = 5071;
constexpr std::uint16_t kFrontTcp = 5090, kFrontTls = 5091, kFrontTcpV1 = 5092;

Endpoint at(const char* address, std::uint16_t port) {
  return Endpoint{boost::asio::ip::make_address(address), port};
}

// The HAProxy configuration of this test (docs/operations.md, "Behind a load balancer", shows it).
std::string haproxy_config() {
  return R"(global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s

# SIP over TCP and TLS (passed through: edged terminates TLS), PROXY protocol v2.
frontend sip_tcp
    bind 127.0.0.10:5090
    default_backend edge_tcp
frontend sip_tls
    bind 127.0.0.10:5091
    default_backend edge_tls
# The same over v1 (text), for the v1 parser against a real sender.
frontend sip_tcp_v1
    bind 127.0.0.10:5092
    default_backend edge_tcp_v1

backend edge_tcp
    source 127.0.0.10
    server edge1 127.0.0.1:5070 send-proxy-v2
backend edge_tls
    source 127.0.0.10
    server edge1 127.0.0.1:5071 send-proxy-v2
backend edge_tcp_v1
    source 127.0.0.10
    server edge1 127.0.0.1:5070 send-proxy
)";
}

// Listening sockets on IPv4 from /proc/net/tcp: "0A00007F:13E2" is 127.0.0.10:5090, state 0A LISTEN.
bool listening(const char* address, std::uint16_t port) {
  const auto a = boost::asio::ip::make_address_v4(address).to_bytes();
  char want[32];
  std::snprintf(want, sizeof want, "%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], port);
  std::ifstream in("/proc/net/tcp");
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string sl, local, remote, state;
    f >> sl >> local >> remote >> state;
    if (local == want && state == "0A") return true;
  }
  return false;
}

// The remote address and port a v1 IPv4 flow token names (bytes 12..17, docs/token-format.md).
std::string token_remote(const std::string& token) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::vector<std::uint8_t> raw;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : token) {
    const auto v = kAlphabet.find(c);
    if (v == std::string_view::npos) return "?";
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      raw.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (raw.size() != 34) return "not an IPv4 token";
  return std::to_string(raw[12]) + "." + std::to_string(raw[13]) + "." + std::to_string(raw[14]) + "." +
         std::to_string(raw[15]) + ":" + std::to_string(raw[16] << 8 | raw[17]);
}

class BehindLoadBalancer : public HostileTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o = HostileTest::edged_options();
    o.idle_timeout_ms = 30000;  // the held connections of the limits test stay
    // Two TCP (and TLS) listeners: what goes into Via / Record-Route is said once per transport.
    for (const char* a : {"udp 127.0.0.1 5060", "tcp 127.0.0.1 5060", "tls 127.0.0.1 5061",
                          "ws 127.0.0.1 5062", "wss 127.0.0.1 5063"}) {
      o.extra.push_back({"advertise", a});
    }
    o.extra.push_back({"listen", "tcp 127.0.0.1 5070 proxy"});
    o.extra.push_back({"listen", "tls 127.0.0.1 5071 proxy"});
    o.extra.push_back({"proxy_protocol.trusted_sources", std::string(kBalancer) + "/32"});
    o.extra.push_back({"limits.max_per_source_address", "3"});
    return o;
  }

  void SetUp() override {
    HostileTest::SetUp();
    if (HasFatalFailure()) return;
    // A missing haproxy throws here: the test fails, it never skips.
    const auto program = find_program("haproxy", "haproxy");
    haproxy_dir_ = std::make_unique<TempDir>("edge-haproxy");
    const auto cfg = haproxy_dir_->path() / "haproxy.cfg";
    write_file(cfg, haproxy_config());
    ProcessOptions po;
    po.program = program;
    po.args = {"-db", "-f", cfg.string()};  // foreground, one process group (ChildProcess)
    po.log_file = haproxy_dir_->path() / "haproxy.log";
    haproxy_ = std::make_unique<ChildProcess>(po);
    dump_.add("haproxy log", [this] { return haproxy_ ? haproxy_->log() : std::string(); });
    const auto deadline = Clock::now() + Millis(10000);
    while (!(listening(kBalancer, kFrontTcp) && listening(kBalancer, kFrontTls) &&
             listening(kBalancer, kFrontTcpV1))) {
      ASSERT_TRUE(haproxy_->running()) << "haproxy exited:\n" << haproxy_->log();
      ASSERT_LT(Clock::now(), deadline) << "haproxy does not listen:\n" << haproxy_->log();
      std::this_thread::sleep_for(Millis(50));
    }
  }

  void TearDown() override {
    if (haproxy_) {
      const pid_t group = haproxy_->pid();
      haproxy_->stop();
      // Nothing of HAProxy's process group is left.
      errno = 0;
      EXPECT_EQ(::kill(-group, 0), -1) << "haproxy's process group outlived the test";
      EXPECT_EQ(errno, ESRCH);
      haproxy_.reset();
    }
    HostileTest::TearDown();
  }

  // Connects a UA from `from` (any port) to HAProxy's front end and registers it.
  SipMessage register_behind(TestUa& u, const char* from, Transport t = Transport::tcp,
                             std::uint16_t front = kFrontTcp) {
    ConnectOptions co = connect_options();
    co.local = at(from, 0);
    u.connect(t, at(kBalancer, front), co);
    return u.register_with();
  }

  // The Via of the UA's request as the edge forwarded it to the core: received / rport.
  static std::string received_of(const SipMessage& ok) {
    const auto vias = ok.header_values("Via");
    if (vias.empty()) return "no Via";
    return header_param(vias.front(), "received").value_or("-") + ":" +
           header_param(vias.front(), "rport").value_or("-");
  }

  std::uint64_t counter(const char* name) { return edge_->status().number(name); }

  std::unique_ptr<TempDir> haproxy_dir_;
  std::unique_ptr<ChildProcess> haproxy_;
};

// A client behind HAProxy registers; the core sees the client, not the balancer: Via received/rport and
// the Path token name 127.0.0.2:port; a call from the core arrives on the client's connection through
// HAProxy; after the client leaves, the token gets 430.
TEST_F(BehindLoadBalancer, ClientRegistersAndIsCalledThroughTheBalancer) {
  TestUa& alice = ua("alice");
  const SipMessage reg = register_behind(alice, "127.0.0.2");
  ASSERT_EQ(reg.status(), 200) << reg.summary();
  const std::string me = "127.0.0.2:" + std::to_string(alice.local_endpoint().port);
  EXPECT_EQ(received_of(reg), me) << "Via received/rport name the client";
  const std::string token = path_token(reg);
  EXPECT_EQ(token_remote(token), me) << "the Path token names the client";
  EXPECT_EQ(counter("proxy_accepted"), 1u);

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  Call c = call(bob, alice);
  EXPECT_EQ(uri_user(uri_of(c.invite_received.header_values("Record-Route").front())), token);
  bob.send(bob.make_in_dialog(c.caller, "BYE"));
  const SipMessage bye = alice.receive_request("BYE");
  alice.send(alice.make_response(bye, 200, "OK"));
  EXPECT_EQ(bob.receive_response("BYE").status(), 200);

  // The client leaves: HAProxy closes its connection to the edge, the flow ends.
  alice.close();
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("flows_tcp") == 1; }))
      << "the flow outlived the client's connection";
  const SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  const SipMessage r = bob.receive_response("INVITE");
  EXPECT_EQ(r.status(), 430) << r.summary();
  bob.send(TestUa::make_ack_for_failure(invite, r));
  EXPECT_EQ(counter("r430"), 1u);
  expect_unharmed();
}

// Two clients behind the one balancer: two flows, two tokens, each call reaches its own client. TLS
// through HAProxy (passed through, the header before the handshake) and v1 headers as well.
TEST_F(BehindLoadBalancer, ClientsBehindOneBalancerHaveFlowsOfTheirOwn) {
  TestUa& alice = ua("alice");
  TestUa& carol = ua("carol");
  TestUa& dave = ua("dave");
  const SipMessage ra = register_behind(alice, "127.0.0.2");
  const SipMessage rc = register_behind(carol, "127.0.0.3", Transport::tls, kFrontTls);
  const SipMessage rd = register_behind(dave, "127.0.0.4", Transport::tcp, kFrontTcpV1);
  ASSERT_EQ(ra.status(), 200) << ra.summary();
  ASSERT_EQ(rc.status(), 200) << rc.summary();
  ASSERT_EQ(rd.status(), 200) << rd.summary();
  EXPECT_EQ(received_of(rc), "127.0.0.3:" + std::to_string(carol.local_endpoint().port));
  EXPECT_EQ(received_of(rd), "127.0.0.4:" + std::to_string(dave.local_endpoint().port));
  EXPECT_NE(path_token(ra), path_token(rc));
  EXPECT_NE(path_token(ra), path_token(rd));
  EXPECT_EQ(counter("proxy_accepted"), 3u);
  EXPECT_EQ(counter("flows_tls"), 1u);

  TestUa& bob = ua("bob");
  bob.connect(Transport::udp, core_->endpoint(Transport::udp));
  for (TestUa* callee : {&carol, &alice, &dave}) {
    Call c = call(bob, *callee);  // the INVITE arrives on the callee's own connection
    bob.send(bob.make_in_dialog(c.caller, "BYE"));
    const SipMessage bye = callee->receive_request("BYE");
    callee->send(callee->make_response(bye, 200, "OK"));
    EXPECT_EQ(bob.receive_response("BYE").status(), 200);
  }
  expect_unharmed();
}

// limits.max_per_source_address (3 here) counts the client the header names, not HAProxy, whose
// connections are all from 127.0.0.10.
TEST_F(BehindLoadBalancer, PerSourceLimitCountsTheClientNotTheBalancer) {
  std::vector<std::unique_ptr<RawStream>> held;
  for (int i = 0; i < 3; ++i)
    held.push_back(std::make_unique<RawStream>(at(kBalancer, kFrontTcp), at("127.0.0.2", 0)));
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("connections") == 4; }))
      << "the bystander and three clients behind HAProxy";
  RawStream fourth(at(kBalancer, kFrontTcp), at("127.0.0.2", 0));
  EXPECT_TRUE(fourth.wait_eof(Millis(3000))) << "a fourth connection of 127.0.0.2 was accepted";
  EXPECT_EQ(counter("refused_per_address"), 1u);
  // Another client behind the same balancer (its fifth connection to the edge) is welcome.
  TestUa& carol = ua("carol");
  EXPECT_EQ(register_behind(carol, "127.0.0.3").status(), 200);
  for (auto& s : held) EXPECT_FALSE(s->wait_eof(Millis(1))) << "a held connection was closed";
  held.clear();
  fourth.close();
  expect_unharmed();
}

// A direct client of the proxy listener (not a trusted balancer) is served as itself; one that forges a
// PROXY header (v1 or v2) is closed and counted.
TEST_F(BehindLoadBalancer, ForgedHeaderFromAnUntrustedSourceIsRefused) {
  TestUa& direct = ua("direct");
  ConnectOptions co = connect_options();
  co.local = at("127.0.0.5", 0);
  direct.connect(Transport::tcp, at("127.0.0.1", kProxyTcp), co);
  const SipMessage ok = direct.register_with();
  ASSERT_EQ(ok.status(), 200) << ok.summary();
  EXPECT_EQ(received_of(ok), "127.0.0.5:" + std::to_string(direct.local_endpoint().port));

  RawStream v1(at("127.0.0.1", kProxyTcp), at("127.0.0.6", 0));
  v1.write("PROXY TCP4 192.0.2.66 127.0.0.1 4000 5070\r\n" + options_request());
  EXPECT_TRUE(v1.wait_eof(Millis(3000))) << v1.received();
  EXPECT_EQ(v1.received().find("SIP/2.0"), std::string::npos) << "the forged request was answered";

  RawStream v2(at("127.0.0.1", kProxyTls), at("127.0.0.6", 0));
  v2.write(std::string("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x42\x7f\x00\x00\x01\x0f\xa0\x13\xc4",
                       28));
  EXPECT_TRUE(v2.wait_eof(Millis(3000)));
  EXPECT_EQ(counter("proxy_refused_untrusted"), 2u);
  EXPECT_EQ(counter("proxy_accepted"), 0u);
  direct.close();
  expect_unharmed();
}

// The trusted balancer's address without a header, with a malformed one, or silent: closed, each counted
// by its reason (the silent one after limits.header_read_timeout_ms, 1.5 s here).
TEST_F(BehindLoadBalancer, TrustedSourceWithoutAValidHeaderIsRefused) {
  RawStream missing(at("127.0.0.1", kProxyTcp), at(kBalancer, 0));
  missing.write(options_request());
  EXPECT_TRUE(missing.wait_eof(Millis(3000)));
  EXPECT_EQ(missing.received().find("SIP/2.0"), std::string::npos) << "a request without header was answered";

  RawStream malformed(at("127.0.0.1", kProxyTcp), at(kBalancer, 0));
  malformed.write("PROXY TCP4 192.0.2.1 nonsense\r\n" + options_request());
  EXPECT_TRUE(malformed.wait_eof(Millis(3000)));

  RawStream unix_socket(at("127.0.0.1", kProxyTls), at(kBalancer, 0));
  std::string v2_unix("\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\xd8", 16);
  v2_unix.append(216, '\0');
  unix_socket.write(v2_unix);
  EXPECT_TRUE(unix_socket.wait_eof(Millis(3000)));

  const auto started = Clock::now();
  RawStream silent(at("127.0.0.1", kProxyTcp), at(kBalancer, 0));
  EXPECT_TRUE(silent.wait_eof(Millis(5000))) << "a silent balancer connection was kept";
  EXPECT_GE(Clock::now() - started, Millis(1000)) << "closed before the header read timeout";

  const EdgedStatus s = edge_->status();
  EXPECT_EQ(s.number("proxy_refused_missing"), 1u);
  EXPECT_EQ(s.number("proxy_refused_malformed"), 1u);
  EXPECT_EQ(s.number("proxy_refused_unsupported"), 1u);
  EXPECT_EQ(s.number("proxy_refused_timeout"), 1u);
  EXPECT_EQ(s.number("proxy_accepted"), 0u);
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
