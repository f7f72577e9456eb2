// The core's TLS identity: the core link comes up only when the core's certificate chains to tls.ca and
// names core.tls_server_name (default: the core's address), or matches core.tls_pin_sha256; a refused
// link is counted with its reason and delivers nothing; a TLS client of the listener is never the core.
#include "edge/test/process.h"
#include "edge/test/sip/pki.h"
#include "transport_test_support.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>

namespace edge::net::test {
namespace {

using edge::test::CertFiles;
using edge::test::TempDir;
using edge::test::TestPki;
using flow::Transport;

// A core that accepts the edge's TLS connection on loopback with the given certificate.
class TlsCore {
 public:
  explicit TlsCore(const CertFiles& cert) : ctx(ssl::context::tls_server) {
    ctx.use_certificate_chain_file(cert.cert.string());
    ctx.use_private_key_file(cert.key.string(), ssl::context::pem);
    const tcp::endpoint e(asio::ip::make_address("127.0.0.1"), 0);
    acc.open(e.protocol());
    acc.bind(e);
    acc.listen();
    port = acc.local_endpoint().port();
  }
  // The next connection, after its handshake; nullptr when the edge aborted the handshake.
  std::unique_ptr<TlsClient> accept(ms t = 5s) {
    auto c = std::make_unique<TlsClient>(ctx);
    auto r = run_op(
        io, [&](OpHandler h) { acc.async_accept(c->s.lowest_layer(), h); }, t);
    if (r.ec) return nullptr;
    auto hs = run_op(c->io, [&](OpHandler h) { c->s.async_handshake(ssl::stream_base::server, h); });
    if (hs.ec) return nullptr;
    return c;
  }
  ssl::context ctx;
  asio::io_context io;
  tcp::acceptor acc{io};
  std::uint16_t port = 0;
};

// A fresh directory for a TestPki (it writes into an existing one).
std::filesystem::path made(const std::filesystem::path& p) {
  std::filesystem::create_directories(p);
  return p;
}

std::string hex(const unsigned char* d, unsigned n, bool colons) {
  std::string out;
  char b[4];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, colons && i + 1 < n ? "%02X:" : "%02x", d[i]);
    out += b;
  }
  return out;
}

// SHA-256 of the certificate's SubjectPublicKeyInfo (spki) or of the DER certificate, as an operator
// would copy it from `openssl x509 -fingerprint -sha256` (colons, upper case).
std::string pin_of(const CertFiles& c, bool spki) {
  FILE* f = std::fopen(c.cert.c_str(), "r");
  if (f == nullptr) throw std::runtime_error("cannot open " + c.cert.string());
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (x == nullptr) throw std::runtime_error("cannot read " + c.cert.string());
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  const int ok = spki ? X509_pubkey_digest(x, EVP_sha256(), d, &n) : X509_digest(x, EVP_sha256(), d, &n);
  X509_free(x);
  if (ok != 1) throw std::runtime_error("digest failed");
  return hex(d, n, !spki);
}

class CoreIdentityTest : public ::testing::Test {
 protected:
  // The core link over TLS to `port`; `ca`: tls.ca, `name`: core.tls_server_name, `pin`: core.tls_pin_sha256.
  void start(std::uint16_t port, const std::string& ca, const std::string& name = {},
             const std::string& pin = {}, std::vector<ListenerConfig> listeners = {listen(Transport::tcp)}) {
    auto cfg = test_config(std::move(listeners));
    cfg.core.enabled = true;
    cfg.core.transport = Transport::tls;
    cfg.core.port = port;
    cfg.core.reconnect_initial = 20ms;
    cfg.core.reconnect_max = 100ms;
    cfg.core.keepalive_interval = 0ms;  // the fake core answers no CRLF pings
    cfg.core.tls_server_name = name;
    cfg.core.tls_pin_sha256 = pin;
    cfg.tls.ca_file = ca;
    handler = std::make_shared<RecordingHandler>();
    tr = std::make_unique<Transports>(std::move(cfg), handler);
    tr->start();
  }
  // The link is up and carries the core's messages, marked from_core.
  void expect_link_up(TlsCore& core) {
    auto conn = core.accept();
    ASSERT_NE(conn, nullptr);
    ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));
    const std::string in = sip_request("OPTIONS", "from-the-core");
    ASSERT_TRUE(conn->write(in));
    ASSERT_TRUE(handler->wait_messages(1));
    EXPECT_TRUE(handler->messages()[0].from_core);
    EXPECT_EQ(tr->stats().core_identity_failures, 0u);
    last = std::move(conn);
  }
  // Two refused attempts (the link keeps retrying with back-off), counted, nothing delivered.
  void expect_refused(TlsCore& core, const std::string& reason) {
    for (int i = 0; i < 2; ++i) {
      auto conn = core.accept();
      // A chain or name failure aborts the handshake; a pin mismatch closes right after it.
      if (conn) {
        (void)conn->write(sip_request("OPTIONS", "not-the-core"));
        EXPECT_TRUE(conn->wait_closed());
      }
    }
    ASSERT_TRUE(eventually([&] { return tr->stats().core_identity_failures >= 2u; }));
    const auto s = tr->stats();
    EXPECT_FALSE(s.core_connected);
    EXPECT_EQ(s.core_connects, 0u);
    EXPECT_NE(s.core_identity_error.find(reason), std::string::npos) << s.core_identity_error;
    EXPECT_TRUE(handler->messages().empty());
  }

  TempDir dir{"edge-core-identity"};
  TestPki pki{made(dir.path() / "ca")};
  std::shared_ptr<RecordingHandler> handler;
  std::unique_ptr<Transports> tr;
  std::unique_ptr<TlsClient> last;
};

TEST_F(CoreIdentityTest, RightCaAndRightNameBringTheLinkUpWithSni) {
  TlsCore core(pki.issue("core", {"DNS:core.example.test"}));
  start(core.port, pki.ca_file().string(), "core.example.test");
  expect_link_up(core);
  const char* sni = SSL_get_servername(last->s.native_handle(), TLSEXT_NAMETYPE_host_name);
  ASSERT_NE(sni, nullptr);
  EXPECT_STREQ(sni, "core.example.test");
}

TEST_F(CoreIdentityTest, WithoutAServerNameTheCoreAddressIsTheName) {
  TlsCore core(pki.issue("core", {"IP:127.0.0.1"}));
  start(core.port, pki.ca_file().string());
  expect_link_up(core);
  // No SNI for an IP literal (RFC 6066 §3).
  EXPECT_EQ(SSL_get_servername(last->s.native_handle(), TLSEXT_NAMETYPE_host_name), nullptr);
}

TEST_F(CoreIdentityTest, RightCaWrongNameIsRefusedAndCounted) {
  TlsCore core(pki.issue("core", {"DNS:other.example.test", "IP:127.0.0.1"}));
  start(core.port, pki.ca_file().string(), "core.example.test");
  expect_refused(core, "hostname mismatch");
}

TEST_F(CoreIdentityTest, RightCaWrongAddressIsRefusedWhenNoNameIsConfigured) {
  TlsCore core(pki.issue("core", {"IP:127.0.0.2", "DNS:localhost"}));
  start(core.port, pki.ca_file().string());
  expect_refused(core, "IP address mismatch");
}

TEST_F(CoreIdentityTest, ACertificateOfAnotherCaIsRefused) {
  TestPki other(made(dir.path() / "other"), "another CA");
  TlsCore core(other.issue("core", {"DNS:core.example.test"}));
  start(core.port, pki.ca_file().string(), "core.example.test");
  expect_refused(core, "unable to get local issuer certificate");
}

TEST_F(CoreIdentityTest, APinnedPublicKeyBringsTheLinkUpWithoutACa) {
  const CertFiles cert = pki.issue("core", {"DNS:core.example.test"});
  TlsCore core(cert);
  start(core.port, "", "", pin_of(cert, true));
  expect_link_up(core);
}

TEST_F(CoreIdentityTest, APinnedCertificateFingerprintWithColonsBringsTheLinkUp) {
  const CertFiles cert = pki.issue("core", {"DNS:core.example.test"});
  TlsCore core(cert);
  start(core.port, "", "", pin_of(cert, false));
  expect_link_up(core);
}

TEST_F(CoreIdentityTest, APinMismatchIsRefusedAndCountedAndNothingIsDelivered) {
  const CertFiles pinned = pki.issue("core", {"DNS:core.example.test"});
  TlsCore core(pki.issue("impostor", {"DNS:core.example.test"}));  // same CA, same name, other key
  start(core.port, "", "", pin_of(pinned, true));
  expect_refused(core, "core.tls_pin_sha256");
}

TEST_F(CoreIdentityTest, PinAndCaMustBothHold) {
  const CertFiles pinned = pki.issue("core", {"DNS:core.example.test"});
  TlsCore core(pki.issue("impostor", {"DNS:core.example.test"}));
  start(core.port, pki.ca_file().string(), "core.example.test", pin_of(pinned, true));
  expect_refused(core, "core.tls_pin_sha256");
}

TEST_F(CoreIdentityTest, AMalformedPinIsRefusedAtStart) {
  auto cfg = test_config({listen(Transport::tcp)});
  cfg.core.enabled = true;
  cfg.core.transport = Transport::tls;
  cfg.core.tls_pin_sha256 = "abcd";
  try {
    Transports t(cfg, std::make_shared<RecordingHandler>());
    t.start();
    FAIL() << "a 4-digit pin was accepted";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("tls_pin_sha256 is not 64 hex digits"), std::string::npos)
        << e.what();
  }
}

// "From the core" is a property of the verified core link only: a TLS client of the edge's listener
// presenting the core's own certificate (signed by the same CA) is an ordinary client.
TEST_F(CoreIdentityTest, ATlsPeerWithTheCoresCertificateOnTheListenerIsNotTheCore) {
  const CertFiles core_cert = pki.issue("core", {"IP:127.0.0.1"});
  const CertFiles edge_cert = pki.issue("edge", {"IP:127.0.0.1"});
  TlsCore core(core_cert);
  auto cfg = test_config({listen(Transport::tls)});
  cfg.core.enabled = true;
  cfg.core.transport = Transport::tls;
  cfg.core.port = core.port;
  cfg.core.keepalive_interval = 0ms;  // the fake core answers no CRLF pings
  cfg.tls.ca_file = pki.ca_file().string();
  cfg.tls.certificate_chain_file = edge_cert.cert.string();
  cfg.tls.private_key_file = edge_cert.key.string();
  cfg.tls.client_certs = ClientCertPolicy::required;
  handler = std::make_shared<RecordingHandler>();
  tr = std::make_unique<Transports>(std::move(cfg), handler);
  tr->start();
  auto link = core.accept();
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(eventually([&] { return tr->stats().core_connected; }));

  ssl::context client(ssl::context::tls_client);
  client.set_verify_mode(ssl::verify_none);
  client.use_certificate_chain_file(core_cert.cert.string());
  client.use_private_key_file(core_cert.key.string(), ssl::context::pem);
  TlsClient peer(client);
  ASSERT_TRUE(peer.connect(ep("127.0.0.1", tr->port(Transport::tls))));
  ASSERT_TRUE(peer.write(sip_request("OPTIONS", "impersonating-the-core")));
  ASSERT_TRUE(link->write(sip_request("OPTIONS", "the-real-core")));
  ASSERT_TRUE(handler->wait_messages(2));
  for (const auto& m : handler->messages()) {
    const bool from_peer = m.bytes.find("impersonating-the-core") != std::string::npos;
    EXPECT_EQ(m.from_core, !from_peer) << m.bytes;
    if (from_peer) {
      EXPECT_EQ(m.flow.transport, Transport::tls);
    }
  }
}

}  // namespace
}  // namespace edge::net::test
