// Generates the lab default's self-signed TLS certificate with OpenSSL (not an HSM key: it only protects
// transport).
#include "lab_tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

namespace edge::firmware {
namespace {

[[noreturn]] void fail(const std::string& what) {
  char buf[256] = "unknown error";
  if (const unsigned long e = ERR_get_error()) ERR_error_string_n(e, buf, sizeof buf);
  throw std::runtime_error("lab certificate: " + what + ": " + buf);
}

struct FileCloser {
  void operator()(FILE* f) const noexcept { std::fclose(f); }
};

// Writes through a temporary file and renames, so a crash never leaves half a PEM.
template <class Writer>
void write_pem(const std::filesystem::path& path, mode_t mode, Writer&& write) {
  const auto tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("lab certificate: cannot create " + tmp);
  std::unique_ptr<FILE, FileCloser> f(::fdopen(fd, "w"));
  if (!f) {
    ::close(fd);
    throw std::runtime_error("lab certificate: fdopen " + tmp);
  }
  if (!write(f.get())) fail("writing " + path.string());
  std::fflush(f.get());
  ::fsync(fd);
  f.reset();
  std::filesystem::rename(tmp, path);
}

}  // namespace

bool ensure_lab_certificate(const std::filesystem::path& cert, const std::filesystem::path& key) {
  if (std::filesystem::exists(cert) && std::filesystem::exists(key)) return false;
  std::filesystem::create_directories(cert.parent_path());
  std::filesystem::create_directories(key.parent_path());

  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!pkey) fail("EVP_EC_gen");
  std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), X509_free);
  if (!x) fail("X509_new");
  X509_set_version(x.get(), 2);
  unsigned char serial[16] = {};
  if (RAND_bytes(serial, sizeof serial) != 1) fail("RAND_bytes");
  serial[0] &= 0x7f;  // a positive serial (RFC 5280 4.1.2.2)
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr), BN_free);
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()))) fail("serial");
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 825L * 24 * 3600);
  X509_set_pubkey(x.get(), pkey.get());
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("SIP outbound edge lab"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("edge-lab"), -1,
                             -1, 0);
  X509_set_issuer_name(x.get(), name);

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  const std::pair<int, const char*> exts[] = {
      {NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost"},
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, "serverAuth"},
  };
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (!ext) fail("extension");
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), pkey.get(), EVP_sha256()) == 0) fail("X509_sign");

  write_pem(key, 0600, [&](FILE* f) {
    return PEM_write_PrivateKey(f, pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
  write_pem(cert, 0644, [&](FILE* f) { return PEM_write_X509(f, x.get()) == 1; });
  return true;
}

}  // namespace edge::firmware
