// Issue 8 "Hostile input" on TLS and WebSocket against the real edged: garbage handshakes, client
// certificates from an unknown CA where one is required, renegotiation, WebSocket fragments, frames that
// claim a huge length, bad upgrades. (Plaintext on the TLS port and unmasked / bad-opcode / RSV frames are
// in tests/integration/edge/malformed_test.cpp.)
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <random>

#include "edge/test/sip/pki.h"
#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

class TlsInput : public HostileTest {};

TEST_F(TlsInput, GarbageHandshakesAreClosed) {
  std::mt19937 rng(8);
  std::string junk(2000, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  const std::string cases[] = {
      junk,
      // A handshake record header with a length the bytes never reach, then silence.
      std::string("\x16\x03\x01\x40\x00", 5) + junk.substr(0, 100),
      // A ClientHello header whose body is garbage.
      std::string("\x16\x03\x01\x00\x80\x01\x00\x00\x7c\x03\x03", 11) + junk.substr(0, 0x78),
  };
  for (const std::string& bytes : cases) {
    RawStream s(edge_->endpoint(Transport::tls));
    s.write(bytes);
    EXPECT_TRUE(s.wait_eof(Millis(5000))) << "the TLS port kept a garbage handshake open";
    EXPECT_EQ(s.received().find("SIP/2.0"), std::string::npos);
  }
  // Counted as handshake failures or read timeouts (the stalled record), never as flows.
  EXPECT_GE(edge_->status().number("tls_handshake_failures"), 1u);
  expect_unharmed();
}

// A TLS 1.2 client that asks to renegotiate after the handshake: refused (OpenSSL 3 servers do not allow
// client-initiated renegotiation), the connection ends or carries on unrenegotiated; edged unharmed.
TEST_F(TlsInput, ClientRenegotiationIsRefused) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  RawStream s(edge_->endpoint(Transport::tls));
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, s.native_handle());
  timeval tv{5, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ASSERT_EQ(SSL_connect(ssl), 1) << "TLS 1.2 handshake failed";
  EXPECT_EQ(SSL_version(ssl), TLS1_2_VERSION);
  const int asked = SSL_renegotiate(ssl);
  bool renegotiated = false;
  if (asked == 1) {
    // The request goes out with the next I/O; the server's refusal (a no_renegotiation warning or a
    // fatal alert) comes back as a failed handshake or a read error.
    const int rc = SSL_do_handshake(ssl);
    char buf[256];
    const std::string ping = "\r\n\r\n";
    SSL_write(ssl, ping.data(), static_cast<int>(ping.size()));
    const int n = SSL_read(ssl, buf, sizeof buf);
    renegotiated = rc == 1 && SSL_renegotiate_pending(ssl) == 0 && SSL_num_renegotiations(ssl) > 0 && n > 0 &&
                   SSL_total_renegotiations(ssl) > 0;
  }
  EXPECT_FALSE(renegotiated) << "the edge accepted a client-initiated renegotiation";
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  s.close();
  expect_unharmed();
}

// tls.client_certs = required with tls.ca: a certificate from another CA, or none, ends the handshake;
// one from the configured CA registers.
class TlsClientCerts : public HostileTest {
 protected:
  EdgedOptions edged_options() override {
    pki_dir_ = std::make_unique<TempDir>("edge-hostile-pki");
    std::filesystem::create_directories(pki_dir_->path() / "trusted");
    std::filesystem::create_directories(pki_dir_->path() / "unknown");
    trusted_ = std::make_unique<TestPki>(pki_dir_->path() / "trusted", "trusted client CA");
    unknown_ = std::make_unique<TestPki>(pki_dir_->path() / "unknown", "unknown client CA");
    EdgedOptions o = HostileTest::edged_options();
    o.extra.push_back({"tls.client_certs", "required"});
    o.extra.push_back({"tls.ca", trusted_->ca_file().string()});
    return o;
  }
  std::unique_ptr<TempDir> pki_dir_;
  std::unique_ptr<TestPki> trusted_, unknown_;
};

TEST_F(TlsClientCerts, UnknownCaAndNoCertificateAreRefusedTrustedOneRegisters) {
  const auto before = edge_->status().number("tls_handshake_failures");
  for (const bool with_cert : {true, false}) {
    SCOPED_TRACE(with_cert ? "certificate from an unknown CA" : "no certificate");
    ConnectOptions co;
    co.timeout = Millis(3000);
    if (with_cert) {
      const CertFiles c = unknown_->issue("mallory");
      co.tls.cert_file = c.cert;
      co.tls.key_file = c.key;
    }
    TestUa& u = ua("refused" + std::to_string(++serial_));
    bool refused = false;
    try {
      u.connect(Transport::tls, edge_->endpoint(Transport::tls), co);
      // TLS 1.3: the client learns of the refusal on its first read.
      u.send(u.make_register());
      refused = !u.try_receive(Millis(2000)).has_value() && (!u.is_open() || u.wait_closed(Millis(2000)));
    } catch (const std::exception&) {
      refused = true;
    }
    EXPECT_TRUE(refused) << "the edge served a client it must refuse";
  }
  EXPECT_GE(edge_->status().number("tls_handshake_failures"), before + 2);
  const CertFiles good = trusted_->issue("alice");
  ConnectOptions co;
  co.tls.cert_file = good.cert;
  co.tls.key_file = good.key;
  TestUa& alice = ua("alice-cert");
  alice.connect(Transport::tls, edge_->endpoint(Transport::tls), co);
  EXPECT_EQ(alice.register_with().status(), 200);
  alice.close();
  expect_unharmed();
}

// A REGISTER for raw WebSocket tests (Via and Contact in RFC 7118 style).
std::string ws_register(const std::string& user) {
  return "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
         "Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=" + TestUa::new_branch() + "\r\n"
         "Max-Forwards: 70\r\nFrom: <sip:" + user + "@127.0.0.1>;tag=" + TestUa::new_tag() + "\r\n"
         "To: <sip:" + user + "@127.0.0.1>\r\nCall-ID: " + TestUa::new_call_id() + "\r\nCSeq: 1 REGISTER\r\n"
         "Supported: path, outbound\r\n"
         "Contact: <sip:" + user + "@df7jal23ls0d.invalid;transport=ws;ob>;reg-id=1;"
         "+sip.instance=\"<urn:uuid:" + random_uuid() + ">\"\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n";
}

class WsInput : public HostileTest {
 protected:
  std::unique_ptr<RawStream> upgraded() {
    auto s = std::make_unique<RawStream>(edge_->endpoint(Transport::ws));
    s->write(ws_upgrade(edge_->endpoint(Transport::ws).port));
    const std::string answer = s->read_until("\r\n\r\n", Millis(5000));
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 101")) << answer;
    return s;
  }
};

// RFC 6455 §5.4: a message may come in fragments, with control frames between them.
TEST_F(WsInput, FragmentedMessageWithAPingInsideIsServed) {
  auto s = upgraded();
  const std::string reg = ws_register("frag");
  const std::size_t third = reg.size() / 3;
  s->write(ws_frame(0x01, reg.substr(0, third)) + ws_frame(0x00, reg.substr(third, third)) +
           ws_frame(0x89, "ping") + ws_frame(0x80, reg.substr(2 * third)));
  const std::string got = s->read_until("SIP/2.0 200", Millis(5000));
  EXPECT_NE(got.find("SIP/2.0 200"), std::string::npos) << got;
  s->close();
  expect_unharmed();
}

TEST_F(WsInput, FramesClaimingHugeLengthsAreClosedAtOnce) {
  for (const std::uint64_t claimed : {std::uint64_t{1} << 40, std::uint64_t{70'000}, ~std::uint64_t{0}}) {
    SCOPED_TRACE(claimed);
    auto s = upgraded();
    std::string f = "\x81";
    f += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((claimed >> shift) & 0xff);
    f += "\x01\x02\x03\x04OPTIONS";
    s->write(f);
    EXPECT_TRUE(s->wait_eof(Millis(3000))) << "the edge waits for a frame it must refuse";
  }
  expect_unharmed();
}

TEST_F(WsInput, BadUpgradesAreRefused) {
  const std::uint16_t port = edge_->endpoint(Transport::ws).port;
  const std::string host = "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
  const std::string cases[] = {
      "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
          "Sec-WebSocket-Protocol: sip\r\n\r\n",  // no Sec-WebSocket-Key
      "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
          "Sec-WebSocket-Protocol: sip\r\n\r\n",  // an old protocol version
      "POST / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
          "Sec-WebSocket-Protocol: sip\r\nContent-Length: 0\r\n\r\n",  // not GET
      "GET / HTTP/1.1\r\n" + std::string(20000, 'X') + "\r\n\r\n",    // a huge header line
      "\x16\x03\x01\x00\x10garbage-garbage!",                          // TLS on the plain WS port
  };
  for (const std::string& req : cases) {
    SCOPED_TRACE(req.substr(0, 40));
    RawStream s(edge_->endpoint(Transport::ws));
    s.try_write(req);
    s.wait_eof(Millis(4000));
    EXPECT_TRUE(s.eof()) << "the connection stayed open";
    EXPECT_FALSE(s.received().starts_with("HTTP/1.1 101")) << s.received();
  }
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
