// Throw-away X.509 material (a CA and leaf certificates for loopback) for TLS and WSS tests.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace edge::test {

struct CertFiles {
  std::filesystem::path cert;  // PEM certificate
  std::filesystem::path key;   // PEM private key (unencrypted)
};

// A fresh P-256 CA in a directory; issues leaf certificates signed by it. The
// files live as long as the directory the caller names (usually a TempDir).
class TestPki {
 public:
  explicit TestPki(std::filesystem::path dir, std::string ca_name = "edge test CA");
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  const std::filesystem::path& ca_file() const { return ca_.cert; }
  // A leaf for a server or client, valid one day. sans: "IP:127.0.0.1",
  // "IP:::1", "DNS:localhost"; empty means IP:127.0.0.1, IP:::1, DNS:localhost.
  CertFiles issue(const std::string& common_name, const std::vector<std::string>& sans = {});
  // Writes a PEM CRL signed by this CA that revokes `revoked` (certificates
  // it issued; none: an empty CRL), valid from an hour ago for one day.
  void write_crl(const std::filesystem::path& path, const std::vector<CertFiles>& revoked);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;  // the CA key and certificate
  std::filesystem::path dir_;
  CertFiles ca_;
  long serial_ = 1;
};

}  // namespace edge::test
