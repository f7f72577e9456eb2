// check(): what would keep a transport configuration from starting (ports in use, addresses, TLS
// material), found without starting it; listeners a running instance holds are not probed.
#include "edge/net/transport/check.h"

#include "transport_test_support.h"

#include <cstdlib>
#include <string>

namespace edge::net::test {
namespace {

using flow::Transport;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A port nothing listens on now (bound by the OS, then released).
std::uint16_t free_port() {
  asio::io_context io;
  tcp::acceptor a(io, ep("127.0.0.1", 0));
  return a.local_endpoint().port();
}

std::string on(std::uint16_t port) { return " 127.0.0.1:" + std::to_string(port); }

TEST(TransportCheck, AConfigurationThatWouldStartPasses) {
  TestCert cert;
  const auto port = free_port();
  auto cfg = test_config({{Transport::tcp, "127.0.0.1", port},
                          {Transport::udp, "127.0.0.1", port},  // another socket kind: no clash
                          listen(Transport::tls),
                          listen(Transport::tcp, "::1")});
  cfg.tls = cert.tls();
  EXPECT_EQ(check(cfg), "");
  // Nothing stays bound: the configuration starts right after.
  Transports t(cfg, std::make_shared<RecordingHandler>());
  EXPECT_NO_THROW(t.start());
  t.stop();
}

TEST(TransportCheck, APortInUseIsRefusedWithAReasonNamingIt) {
  TestCert cert;
  asio::io_context io;
  tcp::acceptor stream_taken(io, ep("127.0.0.1", 0));  // listening, as another process would
  const auto port = stream_taken.local_endpoint().port();
  const std::vector<std::pair<Transport, std::string>> streams = {
      {Transport::tcp, "tcp"}, {Transport::tls, "tls"}, {Transport::ws, "ws"}, {Transport::wss, "wss"}};
  for (const auto& [t, text] : streams) {
    auto cfg = test_config({{t, "127.0.0.1", port}});
    cfg.tls = cert.tls();
    EXPECT_EQ(check(cfg), text + on(port) + ": cannot bind: address in use");
  }
  udp::socket udp_taken(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto uport = udp_taken.local_endpoint().port();
  EXPECT_EQ(check(test_config({{Transport::udp, "127.0.0.1", uport}})),
            "udp" + on(uport) + ": cannot bind: address in use");
  // The first listener that cannot bind is named, after those that can.
  EXPECT_EQ(
      check(test_config({{Transport::tcp, "127.0.0.1", free_port()}, {Transport::tcp, "127.0.0.1", port}})),
      "tcp" + on(port) + ": cannot bind: address in use");
}

TEST(TransportCheck, AListenerAlreadyBoundIsNotBoundAgain) {
  auto running_cfg = test_config({listen(Transport::tcp), listen(Transport::udp)});
  Transports running(running_cfg, std::make_shared<RecordingHandler>());
  running.start();
  const auto tport = running.port(Transport::tcp), uport = running.port(Transport::udp);
  const std::vector<ListenerConfig> held = {{Transport::tcp, "127.0.0.1", tport},
                                            {Transport::udp, "127.0.0.1", uport}};
  auto next = test_config(held);
  next.listeners.push_back(listen(Transport::ws));
  EXPECT_EQ(check(next, held), "");  // what runs keeps its sockets across the restart
  // Not held: then the running instance is in the way.
  EXPECT_EQ(check(next), "tcp" + on(tport) + ": cannot bind: address in use");
  EXPECT_EQ(check(next, {held[0]}), "udp" + on(uport) + ": cannot bind: address in use");
  // Held means same transport, address and port: a ws listener on the tcp port is a new socket.
  EXPECT_EQ(check(test_config({{Transport::ws, "127.0.0.1", tport}}), held),
            "ws" + on(tport) + ": cannot bind: address in use");
  running.stop();
}

TEST(TransportCheck, AnAddressThatIsNotAnIpLiteralIsRefused) {
  EXPECT_EQ(check(test_config({{Transport::tcp, "1.2.3", 5060}})), "tcp 1.2.3:5060: not an IP address");
  EXPECT_EQ(check(test_config({{Transport::udp, "localhost", 0}})), "udp localhost:0: not an IP address");
  EXPECT_EQ(check(test_config({listen(Transport::tcp), {Transport::tls, "::1::2", 5061}})),
            "tls [::1::2]:5061: not an IP address");
  auto core = test_config({});
  core.core.enabled = true;
  core.core.address = "core.example.test";
  EXPECT_EQ(check(core), "core core.example.test: not an IP address");
}

TEST(TransportCheck, TwoListenersOnOneAddressAndPortAreRefused) {
  const auto port = free_port();
  EXPECT_EQ(check(test_config({{Transport::tcp, "127.0.0.1", port}, {Transport::ws, "127.0.0.1", port}})),
            "tcp" + on(port) + " and ws" + on(port) + ": same address and port");
  EXPECT_EQ(check(test_config({{Transport::udp, "::1", port}, {Transport::udp, "0:0::1", port}})),
            "udp [::1]:" + std::to_string(port) + " and udp [0:0::1]:" + std::to_string(port) +
                ": same address and port");
}

TEST(TransportCheck, TheRulesStartAppliesComeFirst) {
  EXPECT_TRUE(contains(check(test_config({{Transport::sctp, "127.0.0.1", 0}})), "transport not supported"));
  auto small = test_config({listen(Transport::tcp)});
  small.limits.max_message_size = 100;
  EXPECT_EQ(check(small), "limits: max_message_size below 512 bytes");
}

TEST(TransportCheck, AMissingCertificateFileIsRefusedNamingIt) {
  TestCert cert;
  auto cfg = test_config({listen(Transport::wss)});
  cfg.tls = cert.tls();
  cfg.tls.certificate_chain_file = (cert.dir / "nope.pem").string();
  const std::string reason = check(cfg);
  EXPECT_EQ(reason.rfind("tls: cannot load certificate chain " + cfg.tls.certificate_chain_file, 0), 0u)
      << reason;
  cfg.tls = cert.tls();
  cfg.tls.private_key_file = (cert.dir / "nokey.pem").string();
  EXPECT_EQ(check(cfg).rfind("tls: cannot load private key " + cfg.tls.private_key_file, 0), 0u)
      << check(cfg);
  // No tls / wss listener and no TLS core: the material is not needed, so not looked at.
  cfg.listeners = {listen(Transport::tcp)};
  EXPECT_EQ(check(cfg), "");
}

TEST(TransportCheck, AKeyThatDoesNotMatchTheCertificateIsRefused) {
  TestCert cert, other;
  // Another key of the same kind (EC P-256), and a key of another kind (RSA).
  const std::string rsa_key = (cert.dir / "rsa.pem").string();
  const std::string cmd =
      "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '" + rsa_key + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  for (const std::string& key : {other.key, rsa_key}) {
    SCOPED_TRACE(key);
    auto cfg = test_config({listen(Transport::tls)});
    cfg.tls = cert.tls();
    cfg.tls.private_key_file = key;
    const std::string reason = check(cfg);
    EXPECT_TRUE(contains(reason, "tls: ") && contains(reason, "private key " + key)) << reason;
    // start() refuses it the same way.
    Transports t(cfg, std::make_shared<RecordingHandler>());
    try {
      t.start();
      ADD_FAILURE() << "start() should have thrown";
    } catch (const TransportError& e) {
      EXPECT_EQ(std::string(e.what()), reason);
    }
    // The core link's client context presents the same certificate: checked too.
    auto core = test_config({});
    core.tls = cfg.tls;
    core.core.enabled = true;
    core.core.transport = Transport::tls;
    EXPECT_EQ(check(core), reason);
  }
}

}  // namespace
}  // namespace edge::net::test
