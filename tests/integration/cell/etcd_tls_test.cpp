// EtcdClient over TLS against a real etcd (Debian etcd-server) serving https:// on loopback with
// --client-cert-auth, with certificates this test makes with the openssl CLI in a temp dir (a CA, a
// server certificate for IP:127.0.0.1, a client certificate; and a second CA that signed nothing
// etcd serves): reads, writes and a watch over TLS with a client certificate; a server the client's
// CA did not sign, and a client without a certificate, refused with an EtcdError that names the
// endpoint and TLS, within the call's deadline; a dead first endpoint skipped for a TLS one; a TLS
// member restarted under a client and a watch; the endpoint and TLS settings refused with a reason.
#include <edge/cell/etcd.h>
#include <edge/test/process.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "etcd_server.h"

namespace {

using edge::cell::EtcdClient;
using edge::cell::EtcdEndpoint;
using edge::cell::EtcdError;
using edge::cell::EtcdOptions;
using edge::cell::EtcdTls;
using edge::cell::EtcdWatch;
using edge::cell::parse_etcd_endpoint;
using edge::cell::WatchEvent;
using edge::test::EtcdServer;
using edge::test::EtcdServerTls;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A small PKI made with the openssl CLI: P-256 keys, certificates valid for two days.
class TestPki {
 public:
  TestPki() {
    make_ca("ca");
    make_ca("other-ca");
    // The server certificate serves as etcd's client certificate too (its gateway dials itself).
    issue("server", "ca", "/CN=etcd-test-member",
          "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n");
    issue("client", "ca", "/CN=edge-cell-client",
          "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
    issue("other-client", "other-ca", "/CN=edge-cell-stranger",
          "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
  }
  std::string pem(const std::string& name) const { return (dir_.path() / (name + ".pem")).string(); }
  std::string key(const std::string& name) const { return (dir_.path() / (name + ".key")).string(); }
  const std::filesystem::path& dir() const { return dir_.path(); }

  EtcdServerTls server_tls() const {
    EtcdServerTls t;
    t.cert_file = pem("server");
    t.key_file = key("server");
    t.client_ca_file = pem("ca");
    t.client = client_tls();
    return t;
  }
  EtcdTls client_tls() const { return EtcdTls{pem("ca"), pem("client"), key("client")}; }

 private:
  void openssl(std::vector<std::string> args) {
    args.insert(args.begin(), openssl_.string());
    const auto r = edge::test::run_command(args);
    if (r.exit_code != 0) throw std::runtime_error("openssl " + args[1] + " failed: " + r.err);
  }
  void make_ca(const std::string& name) {
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             key(name), "-out", pem(name), "-days", "2", "-subj", "/CN=edge-test-" + name});
  }
  void issue(const std::string& name, const std::string& ca, const std::string& subject,
             const std::string& extensions) {
    const std::string csr = (dir_.path() / (name + ".csr")).string();
    const std::string ext = (dir_.path() / (name + ".ext")).string();
    edge::test::write_file(ext, extensions);
    openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             key(name), "-out", csr, "-subj", subject});
    openssl({"x509", "-req", "-in", csr, "-CA", pem(ca), "-CAkey", key(ca), "-set_serial",
             std::to_string(++serial_), "-days", "2", "-out", pem(name), "-extfile", ext});
  }
  std::filesystem::path openssl_ = edge::test::find_program("openssl", "openssl");
  edge::test::TempDir dir_{"edge-etcd-pki"};
  int serial_ = 0;
};

// The error a call throws; fails the test when it succeeds. Also checks that it came back
// within the deadline per endpoint (plus slack): a TLS failure must never hang a caller.
EtcdError call_error(EtcdClient& c, const EtcdOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  try {
    c.get("/cell/x");
  } catch (const EtcdError& e) {
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, o.call_timeout * static_cast<long>(o.endpoints.size()) + 3s) << "the call hung";
    std::cerr << "EtcdError as the caller sees it: " << e.what() << "\n";
    return e;
  }
  ADD_FAILURE() << "the call succeeded";
  return EtcdError("", 0);
}

class EtcdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override { etcd_.start(); }
  TestPki pki_;
  EtcdServer etcd_{pki_.server_tls()};
};

TEST_F(EtcdTlsTest, ReadsWritesAndAWatchWorkOverTlsWithAClientCertificate) {
  const EtcdOptions o = etcd_.options();
  ASSERT_THAT(o.endpoints[0], ::testing::StartsWith("https://127.0.0.1:"));
  EtcdClient c(o);
  EXPECT_FALSE(c.get("/cell/a").has_value());
  c.put("/cell/a", std::string("tls\0bytes", 9));
  EXPECT_EQ(c.get("/cell/a")->value, std::string("tls\0bytes", 9));
  EXPECT_TRUE(c.create("/cell/meta", "m"));
  EXPECT_FALSE(c.create("/cell/meta", "again"));
  const std::int64_t lease = c.grant_lease(5s);
  EXPECT_GT(c.keep_alive(lease), 0);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;
  EtcdWatch w(c, "/cell/w/", 0, [&](const std::vector<WatchEvent>& batch) {
    std::lock_guard lock(mu);
    for (const auto& e : batch) seen.push_back(e.kv.key + "=" + e.kv.value);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  for (int i = 0; i < 50 && seen.empty(); ++i) {
    lock.unlock();
    c.put("/cell/w/1", "x");
    lock.lock();
    cv.wait_for(lock, 100ms, [&] { return !seen.empty(); });
  }
  ASSERT_FALSE(seen.empty()) << "no watch event over TLS";
  EXPECT_EQ(seen.front(), "/cell/w/1=x");
}

TEST_F(EtcdTlsTest, APlainClientGetsNothingFromTheTlsPort) {
  EtcdOptions o;
  o.endpoints = {"http://" + etcd_.endpoint()};
  o.call_timeout = 1000ms;
  EtcdClient plain(o);
  const EtcdError e = call_error(plain, o);
  EXPECT_TRUE(e.unavailable()) << e.what();
  EXPECT_THAT(e.what(), HasSubstr(o.endpoints[0]));
}

TEST_F(EtcdTlsTest, AServerCertificateTheCaDidNotSignIsRefusedNamingTlsAndTheEndpoint) {
  EtcdOptions o = etcd_.options();
  o.tls->ca_file = pki_.pem("other-ca");
  EtcdClient c(o);
  const EtcdError e = call_error(c, o);
  EXPECT_TRUE(e.unavailable()) << e.what();
  EXPECT_THAT(e.what(), HasSubstr(o.endpoints[0]));
  EXPECT_THAT(e.what(), HasSubstr("TLS")) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("the server's certificate is not accepted: unable to get local issuer"))
      << e.what();
}

TEST_F(EtcdTlsTest, AServerCertificateThatDoesNotNameTheEndpointsHostIsRefused) {
  // The member's certificate names IP:127.0.0.1 only; "localhost" reaches the same listener but
  // is a name the certificate does not carry.
  EtcdOptions o = etcd_.options();
  o.endpoints = {"https://localhost:" + etcd_.endpoint().substr(etcd_.endpoint().rfind(':') + 1)};
  EtcdClient c(o);
  const EtcdError e = call_error(c, o);
  EXPECT_THAT(e.what(), HasSubstr(o.endpoints[0]));
  EXPECT_THAT(e.what(), HasSubstr("the server's certificate is not accepted: hostname mismatch")) << e.what();
}

TEST_F(EtcdTlsTest, AClientWithoutACertificateIsRefusedWhenTheServerRequiresOne) {
  EtcdOptions o = etcd_.options();
  o.tls->cert_file.clear();
  o.tls->key_file.clear();
  EtcdClient c(o);
  const EtcdError e = call_error(c, o);
  EXPECT_THAT(e.what(), HasSubstr(o.endpoints[0]));
  EXPECT_THAT(e.what(), HasSubstr("requires a client certificate and none is configured")) << e.what();

  // A certificate from a CA the server does not trust fares no better.
  o.tls->cert_file = pki_.pem("other-client");
  o.tls->key_file = pki_.key("other-client");
  EtcdClient stranger(o);
  const EtcdError s = call_error(stranger, o);
  EXPECT_THAT(s.what(), HasSubstr("TLS: the server refused this client")) << s.what();
  EXPECT_THAT(s.what(), HasSubstr("does not accept cert_file")) << s.what();
}

TEST_F(EtcdTlsTest, AnHttpsEndpointIsTlsEvenWithoutTlsSettings) {
  // No CA given: the system's roots, which did not sign the test CA's server certificate. The
  // handshake is tried (and fails on the certificate): https:// is never spoken in plain.
  EtcdOptions o;
  o.endpoints = {etcd_.url()};
  o.call_timeout = 1000ms;
  EtcdClient c(o);
  const EtcdError e = call_error(c, o);
  EXPECT_THAT(e.what(), HasSubstr("TLS")) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("certificate")) << e.what();
}

TEST_F(EtcdTlsTest, ADeadFirstEndpointIsSkippedForTheTlsOne) {
  EtcdOptions o = etcd_.options();
  const std::string dead = "https://127.0.0.1:" + std::to_string(edge::test::free_port());
  o.endpoints = {dead, etcd_.url()};
  EtcdClient c(o);
  c.put("/cell/x", "over the second endpoint");
  EXPECT_EQ(c.endpoint(), etcd_.url());
  EXPECT_EQ(c.get("/cell/x")->value, "over the second endpoint");
}

TEST_F(EtcdTlsTest, ARestartedTlsMemberIsReconnectedToByTheClientAndTheWatch) {
  EtcdClient c(etcd_.options());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;
  EtcdWatch w(c, "/cell/", 0, [&](const std::vector<WatchEvent>& batch) {
    std::lock_guard lock(mu);
    for (const auto& e : batch) seen.push_back(e.kv.key);
    cv.notify_all();
  });
  auto wait_for = [&](std::size_t n, std::chrono::milliseconds t) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, t, [&] { return seen.size() >= n; });
  };
  for (int i = 0; i < 50 && !wait_for(1, 100ms); ++i) c.put("/cell/before", "1");
  ASSERT_TRUE(wait_for(1, 2s));

  etcd_.stop();
  const EtcdError down = call_error(c, etcd_.options());
  EXPECT_TRUE(down.unavailable()) << down.what();
  etcd_.start();
  c.put("/cell/after", "2");
  EXPECT_EQ(c.get("/cell/before")->value, "1") << "the same client reads again";
  ASSERT_TRUE(wait_for(2, 10s)) << "the watch did not come back over TLS";
  std::lock_guard lock(mu);
  EXPECT_EQ(seen.back(), "/cell/after");
  EXPECT_GE(w.streams(), 2);
}

// ---- configuration refused with a reason (no etcd needed) ----

TEST(EtcdEndpointParsing, TheSchemeHostAndPortAreTakenApart) {
  const EtcdEndpoint a = parse_etcd_endpoint("127.0.0.1:2379");
  EXPECT_EQ(a.scheme, EtcdEndpoint::Scheme::none);
  EXPECT_EQ(a.target(), "127.0.0.1:2379");
  const EtcdEndpoint b = parse_etcd_endpoint("https://etcd-1.lab:2379/");
  EXPECT_EQ(b.scheme, EtcdEndpoint::Scheme::https);
  EXPECT_EQ(b.host, "etcd-1.lab");
  EXPECT_EQ(b.port, 2379);
  const EtcdEndpoint c = parse_etcd_endpoint("http://[::1]:12379");
  EXPECT_EQ(c.scheme, EtcdEndpoint::Scheme::http);
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.target(), "[::1]:12379");
}

TEST(EtcdEndpointParsing, AMalformedEndpointIsRefusedWithTheReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "no host"},
      {"127.0.0.1", "no :port"},
      {"https://127.0.0.1", "no :port"},
      {":2379", "no host"},
      {"127.0.0.1:0", "port"},
      {"127.0.0.1:65536", "port"},
      {"127.0.0.1:23x9", "port"},
      {"unix:///run/etcd.sock", "unknown scheme \"unix\""},
      {"grpcs://127.0.0.1:2379", "unknown scheme"},
      {"https://127.0.0.1:2379/v3", "a path is not allowed"},
      {"https://user@127.0.0.1:2379", "user information"},
      {"::1:2379", "IPv6 address needs [ ]"},
      {"[::1]2379", "no :port"},
      {"[zz]:2379", "IPv6"},
      {"etcd one:2379", "character"},
  };
  for (const auto& [text, why] : cases) {
    try {
      parse_etcd_endpoint(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const EtcdError& e) {
      EXPECT_THAT(e.what(), HasSubstr(why)) << text;
      EXPECT_THAT(e.what(), HasSubstr("\"" + text + "\"")) << "names the endpoint";
      EXPECT_EQ(e.grpc_code(), 3) << "INVALID_ARGUMENT";
    }
    EtcdOptions o;
    o.endpoints = {"127.0.0.1:2379", text};
    EXPECT_THROW(EtcdClient{o}, EtcdError) << "the client refuses it too: " << text;
  }
}

class EtcdTlsSettings : public ::testing::Test {
 protected:
  std::string refusal(const EtcdOptions& o) {
    try {
      EtcdClient c(o);
    } catch (const EtcdError& e) {
      EXPECT_EQ(e.grpc_code(), 3) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "accepted";
    return "";
  }
  EtcdOptions tls_options() {
    EtcdOptions o;
    o.endpoints = {"127.0.0.1:2379"};
    o.tls = pki_.client_tls();
    return o;
  }
  TestPki pki_;
};

TEST_F(EtcdTlsSettings, PlainAndTlsEndpointsAreNeverMixed) {
  EtcdOptions o = tls_options();
  o.endpoints = {"https://127.0.0.1:2379", "http://127.0.0.1:2380"};
  EXPECT_THAT(refusal(o), HasSubstr("http://127.0.0.1:2380 is plain http:// but TLS settings are given"));
  o.tls.reset();
  EXPECT_THAT(refusal(o), HasSubstr("mix TLS (https://) and plain"));
  o.endpoints = {"https://127.0.0.1:2379", "127.0.0.1:2380"};
  EXPECT_THAT(refusal(o), HasSubstr("mix TLS (https://) and plain"));
  o = tls_options();
  o.endpoints = {"https://127.0.0.1:2379", "127.0.0.1:2380"};
  EXPECT_NO_THROW(EtcdClient{o}) << "a bare host:port beside TLS settings is TLS";
}

TEST_F(EtcdTlsSettings, UnreadableOrWrongFilesAreRefusedNamingTheFileAndTheSetting) {
  EtcdOptions o = tls_options();
  o.tls->ca_file = (pki_.dir() / "missing.pem").string();
  EXPECT_THAT(refusal(o), HasSubstr("ca_file " + o.tls->ca_file + ": cannot read it"));
  o = tls_options();
  o.tls->ca_file = pki_.key("ca");
  EXPECT_THAT(refusal(o), HasSubstr("ca_file " + o.tls->ca_file + ": no PEM certificate"));
  o = tls_options();
  o.tls->key_file.clear();
  EXPECT_THAT(refusal(o), HasSubstr("cert_file " + o.tls->cert_file + " without a key_file"));
  o = tls_options();
  o.tls->cert_file.clear();
  EXPECT_THAT(refusal(o), HasSubstr("without a cert_file"));
  o = tls_options();
  o.tls->key_file = pki_.pem("client");
  EXPECT_THAT(refusal(o), HasSubstr("no unencrypted PEM private key"));
  o = tls_options();
  o.tls->key_file = pki_.key("other-client");
  EXPECT_THAT(refusal(o), HasSubstr("is not the key of cert_file " + o.tls->cert_file));
}

}  // namespace
