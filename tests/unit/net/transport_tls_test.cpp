// TLS transport: handshake and delivery (IPv4/IPv6), CRLF pong, TLS 1.2 floor, bad material, TLS reload.
#include "transport_test_support.h"

namespace edge::net::test {
namespace {

using flow::Transport;

class TlsTest : public ::testing::Test {
 protected:
  void start(TransportConfig cfg) {
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  void start() {
    auto cfg = test_config({listen(Transport::tls), listen(Transport::tls, "::1")});
    cfg.tls = cert.tls();
    start(cfg);
  }
  tcp::endpoint v4() const { return ep("127.0.0.1", tr->port(Transport::tls)); }

  TestCert cert;
  std::shared_ptr<ssl::context> client_ctx = client_tls_context();
  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
};

TEST_F(TlsTest, DeliversAndAnswersOverTlsOnIpv4AndIpv6) {
  start();
  handler->echo_prefix = "echo:";
  TlsClient a(*client_ctx), b(*client_ctx);
  ASSERT_TRUE(a.connect(v4()));
  ASSERT_TRUE(b.connect(ep("::1", tr->port(Transport::tls, flow::Family::ipv6))));
  const std::string m4 = sip_request("OPTIONS", "t4"), m6 = sip_request("OPTIONS", "t6");
  ASSERT_TRUE(a.write(m4));
  ASSERT_TRUE(b.write(m6));
  ASSERT_TRUE(a.read_until("echo:" + m4));
  ASSERT_TRUE(b.read_until("echo:" + m6));
  ASSERT_TRUE(handler->wait_messages(2));
  for (const auto& m : handler->messages()) EXPECT_EQ(m.flow.transport, Transport::tls);
  EXPECT_EQ(tr->stats().of(Transport::tls).messages_in, 2u);
}

TEST_F(TlsTest, ABurstOfSendsArrivesWholeAndInOrderWithoutNagle) {
  start();
  TlsClient c(*client_ctx);
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write(sip_request("REGISTER", "tls-burst")));
  ASSERT_TRUE(handler->wait_messages(1));
  const auto server = c.s.lowest_layer().remote_endpoint();
  const auto local = c.local();
  EXPECT_EQ(tcp_nodelay(socket_fd_between(server, local)), 1);
  const FlowKey key{Transport::tls, *flow::Endpoint::parse(server.address().to_string(), server.port()),
                    *flow::Endpoint::parse(local.address().to_string(), local.port())};
  std::string expected;
  for (int i = 0; i < 300; ++i) {
    std::string m = "tls-message-" + std::to_string(i) + ";";
    expected += m;
    ASSERT_TRUE(tr->send_to_flow(key, std::move(m)));
  }
  ASSERT_TRUE(c.read_until("tls-message-299;"));
  EXPECT_EQ(c.inbox, expected);
}

TEST_F(TlsTest, CrlfCrlfPingGetsOneCrlfPong) {
  start();
  TlsClient c(*client_ctx);
  ASSERT_TRUE(c.connect(v4()));
  ASSERT_TRUE(c.write("\r\n\r\n"));
  ASSERT_TRUE(c.read_until("\r\n"));
  EXPECT_FALSE(c.read_some(200ms));
  EXPECT_EQ(c.inbox, "\r\n");
}

TEST_F(TlsTest, Tls11ClientIsRefused) {
  start();
  ssl::context old(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(old.native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(old.native_handle(), TLS1_1_VERSION);
  SSL_CTX_set_security_level(old.native_handle(), 0);
  TlsClient c(old);
  EXPECT_FALSE(c.connect(v4()));
  EXPECT_TRUE(eventually([&] { return tr->stats().tls_handshake_failures >= 1; }));
}

TEST_F(TlsTest, StalledHandshakeIsClosedAfterTheHeaderTimeout) {
  auto cfg = test_config({listen(Transport::tls)});
  cfg.tls = cert.tls();
  cfg.limits.header_read_timeout = 300ms;
  start(cfg);
  TcpClient raw;  // connects but never says hello
  ASSERT_TRUE(raw.connect(v4()));
  ASSERT_TRUE(raw.wait_closed(3s));
  EXPECT_TRUE(eventually([&] { return tr->stats().read_timeouts == 1u; })) << tr->stats().read_timeouts;
}

TEST_F(TlsTest, MissingMaterialFailsStartWithTheFileName) {
  auto cfg = test_config({listen(Transport::tls)});
  cfg.tls = cert.tls();
  cfg.tls.certificate_chain_file = (cert.dir / "nope.pem").string();
  Transports t(cfg, std::make_shared<RecordingHandler>());
  try {
    t.start();
    FAIL() << "start() should have thrown";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.pem"), std::string::npos) << e.what();
  }
}

TEST_F(TlsTest, ReloadKeepsEstablishedConnectionsAndServesNewOnesWithTheNewCertificate) {
  start();
  TlsClient before(*client_ctx);
  ASSERT_TRUE(before.connect(v4()));
  TestCert next;
  tr->reload_tls(next.tls());
  EXPECT_THROW(tr->reload_tls(TlsConfig{}), TransportError);  // bad material: the current stays
  TlsClient after(*client_ctx);
  ASSERT_TRUE(after.connect(v4()));
  // The new connection sees the new certificate.
  X509* peer = SSL_get1_peer_certificate(after.s.native_handle());
  ASSERT_NE(peer, nullptr);
  BIO* bio = BIO_new_file(next.cert.c_str(), "r");
  X509* expected = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EXPECT_EQ(X509_cmp(peer, expected), 0);
  X509_free(peer);
  X509_free(expected);
  ASSERT_TRUE(before.write(sip_request("OPTIONS", "old")));
  ASSERT_TRUE(after.write(sip_request("OPTIONS", "new")));
  EXPECT_TRUE(handler->wait_messages(2));
}

// Issue 17: a TLS connection the core opened to our listener is marked for the
// proxy (Inbound::core_address) only when it comes from the core's address and
// shows a certificate that passes the core link's checks (here: the chain to
// tls.ca and the name, the core's IP); without a certificate, or when the name
// asked for (core.tls_server_name) is not in it, it is a client.
TEST_F(TlsTest, ACoresOwnTlsConnectionIsMarkedOnlyWithTheCoresCertificate) {
  TestCert core_cert;
  auto core_ctx = client_tls_context();
  core_ctx->use_certificate_file(core_cert.cert, ssl::context::pem);
  core_ctx->use_private_key_file(core_cert.key, ssl::context::pem);
  for (const std::string name : {"", "core.example.test"}) {
    SCOPED_TRACE("core.tls_server_name=" + name);
    auto cfg = test_config({listen(Transport::tls)});
    cfg.tls = cert.tls();
    cfg.tls.ca_file = core_cert.cert;  // self-signed: its own CA
    cfg.tls.client_certs = ClientCertPolicy::optional;
    cfg.core.enabled = true;
    cfg.core.transport = Transport::tcp;
    cfg.core.address = "127.0.0.1";
    cfg.core.port = 9;  // nothing listens: the core link retries, which does not matter here
    cfg.core.tls_server_name = name;
    tr.reset();
    start(cfg);
    TlsClient core(*core_ctx), anonymous(*client_ctx);
    ASSERT_TRUE(core.connect(v4()));
    ASSERT_TRUE(core.write(sip_request("INVITE", "core-own")));
    ASSERT_TRUE(handler->wait_messages(1));
    ASSERT_TRUE(anonymous.connect(v4()));
    ASSERT_TRUE(anonymous.write(sip_request("INVITE", "anonymous")));
    ASSERT_TRUE(handler->wait_messages(2));
    for (const auto& m : handler->messages()) {
      const bool by_core = m.bytes.find("Call-ID: core-own") != std::string::npos;
      EXPECT_EQ(m.core_address, by_core && name.empty()) << m.bytes;
      EXPECT_FALSE(m.from_core);
    }
  }
}

}  // namespace
}  // namespace edge::net::test
