// A throw-away CA and leaf certificates (OpenSSL 3, P-256) so TLS tests need no fixtures on disk.
#include "edge/test/sip/pki.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace edge::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
  char buf[256] = "";
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  throw std::runtime_error("TestPki: " + what + ": " + buf);
}

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

Key new_key() {
  Key k(EVP_EC_gen("P-256"));
  if (!k) fail("EC key generation");
  return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) fail("extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

Cert new_cert(const std::string& cn, EVP_PKEY* key, X509* issuer, long serial) {
  Cert c(X509_new());
  if (!c) fail("X509_new");
  X509_set_version(c.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);  // tolerate a clock a little behind
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 86400);
  X509_set_pubkey(c.get(), key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  return c;
}

void sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) fail("X509_sign");
}

void write_pem(const std::filesystem::path& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("TestPki: cannot write " + path.string());
  bool ok = cert ? PEM_write_X509(f, cert) == 1
                 : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  if (!ok) fail("PEM write " + path.string());
}

}  // namespace

struct TestPki::Impl {
  Key ca_key;
  Cert ca_cert;
};

TestPki::TestPki(std::filesystem::path dir, std::string ca_name)
    : impl_(std::make_unique<Impl>()), dir_(std::move(dir)) {
  impl_->ca_key = new_key();
  impl_->ca_cert = new_cert(ca_name, impl_->ca_key.get(), nullptr, serial_++);
  X509* ca = impl_->ca_cert.get();
  add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE");
  add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(ca, ca, NID_subject_key_identifier, "hash");
  sign(ca, impl_->ca_key.get());
  ca_ = {dir_ / "ca.pem", dir_ / "ca.key"};
  write_pem(ca_.cert, ca, nullptr);
  write_pem(ca_.key, nullptr, impl_->ca_key.get());
}

TestPki::~TestPki() = default;

CertFiles TestPki::issue(const std::string& common_name, const std::vector<std::string>& sans) {
  Key key = new_key();
  X509* ca = impl_->ca_cert.get();
  Cert cert = new_cert(common_name, key.get(), ca, serial_++);
  std::string san;
  for (const auto& s :
       sans.empty() ? std::vector<std::string>{"IP:127.0.0.1", "IP:::1", "DNS:localhost"} : sans) {
    san += (san.empty() ? "" : ",") + s;
  }
  add_ext(cert.get(), ca, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), ca, NID_key_usage, "critical,digitalSignature,keyAgreement");
  add_ext(cert.get(), ca, NID_ext_key_usage, "serverAuth,clientAuth");
  add_ext(cert.get(), ca, NID_subject_alt_name, san);
  add_ext(cert.get(), ca, NID_authority_key_identifier, "keyid");
  sign(cert.get(), impl_->ca_key.get());
  std::string stem = common_name;
  for (char& ch : stem) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  CertFiles files{dir_ / (stem + ".pem"), dir_ / (stem + ".key")};
  write_pem(files.cert, cert.get(), nullptr);
  write_pem(files.key, nullptr, key.get());
  return files;
}

void TestPki::write_crl(const std::filesystem::path& path, const std::vector<CertFiles>& revoked) {
  std::unique_ptr<X509_CRL, void (*)(X509_CRL*)> crl(X509_CRL_new(), X509_CRL_free);
  if (!crl) fail("X509_CRL_new");
  X509* ca = impl_->ca_cert.get();
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca));
  std::unique_ptr<ASN1_TIME, void (*)(ASN1_TIME*)> last(X509_gmtime_adj(nullptr, -3600), ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, void (*)(ASN1_TIME*)> next(X509_gmtime_adj(nullptr, 86400), ASN1_TIME_free);
  if (!last || !next) fail("CRL times");
  X509_CRL_set1_lastUpdate(crl.get(), last.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (const CertFiles& files : revoked) {
    FILE* f = std::fopen(files.cert.c_str(), "r");
    if (f == nullptr) throw std::runtime_error("TestPki: cannot read " + files.cert.string());
    Cert cert(PEM_read_X509(f, nullptr, nullptr, nullptr));
    std::fclose(f);
    if (!cert) fail("PEM read " + files.cert.string());
    X509_REVOKED* r = X509_REVOKED_new();
    if (r == nullptr) fail("X509_REVOKED_new");
    X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(cert.get()));
    X509_REVOKED_set_revocationDate(r, last.get());
    X509_CRL_add0_revoked(crl.get(), r);
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), impl_->ca_key.get(), EVP_sha256()) <= 0) fail("X509_CRL_sign");
  FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) throw std::runtime_error("TestPki: cannot write " + path.string());
  const bool ok = PEM_write_X509_CRL(out, crl.get()) == 1;
  std::fclose(out);
  if (!ok) fail("PEM write " + path.string());
}

}  // namespace edge::test
