// Fuzz target: firmware bundle verification (header, signature, manifest, compatibility, hashes)
// with a fixed test key, the manifest parser's round trip, the version comparator, trust-key PEM.
// Byte 0 picks the mode: 0 the rest is a whole bundle; 1 the rest is a manifest text, then a NUL,
// then the payload, and the harness signs the manifest (so the fuzzer gets past the signature);
// 2 as 1, but the harness first corrects each file's size and SHA-256 from the payload, and the
// bundle must then verify; 3 the rest is a trust-key PEM.
#include <edge/images/bundle.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

namespace images = edge::images;

namespace {

// Names the broken invariant before aborting, so a crash report says what went wrong.
#define check(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

// A P-256 key made for this fuzz target only; it signs nothing else and nothing trusts it.
constexpr std::string_view kTestPrivateKey =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglhS5hPzjp3W0DIlx\n"
    "XbXoVY0UE/9PGysaHOhD2fME4U+hRANCAATK96+UmaZ/Egb7NpR+efmX+ivklJzN\n"
    "PKYJVfsDmVURIRN994HnXMFyRPhiCT7ESPggOTJiOMZB7rjSvNBY2Ike\n"
    "-----END PRIVATE KEY-----\n";
constexpr std::string_view kTestPublicKey =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyvevlJmmfxIG+zaUfnn5l/or5JSc\n"
    "zTymCVX7A5lVESETffeB51zBckT4Ygk+xEj4IDkyYjjGQe640rzQWNiJHg==\n"
    "-----END PUBLIC KEY-----\n";
constexpr std::string_view kCompatible = "sip-outbound-edge-fuzz";

[[noreturn]] void unexpected(const char* where, const std::exception& e) {
  std::fprintf(stderr, "%s threw a foreign exception: %s\n", where, e.what());
  std::abort();
}

const images::TrustKey& trust() {
  static const images::TrustKey key = images::TrustKey::from_pem(kTestPublicKey, "fuzz-test-key");
  return key;
}

std::vector<std::uint8_t> sign(std::string_view text) {
  static EVP_PKEY* key = [] {
    BIO* bio = BIO_new_mem_buf(kTestPrivateKey.data(), static_cast<int>(kTestPrivateKey.size()));
    EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    check(k != nullptr);
    return k;
  }();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t n = 0;
  check(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1);
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  check(EVP_DigestSign(ctx, nullptr, &n, p, text.size()) == 1);
  std::vector<std::uint8_t> sig(n);
  check(EVP_DigestSign(ctx, sig.data(), &n, p, text.size()) == 1);
  sig.resize(n);
  EVP_MD_CTX_free(ctx);
  return sig;
}

void put_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::string make_bundle(std::string_view manifest, std::string_view payload) {
  const std::vector<std::uint8_t> sig = sign(manifest);
  std::string b = "EDGEBNDL";
  put_be(b, images::kFormatVersion, 4);
  put_be(b, manifest.size(), 4);
  put_be(b, sig.size(), 4);
  put_be(b, 0, 4);
  put_be(b, payload.size(), 8);
  b.append(manifest);
  b.append(sig.begin(), sig.end());
  b.append(payload);
  return b;
}

// verify_bundle reads a path: an in-memory file, rewritten for each input.
const std::string& bundle_path() {
  static const std::string path = [] {
    const int fd = ::memfd_create("fuzz-bundle", 0);
    check(fd >= 0);
    return "/proc/self/fd/" + std::to_string(fd);
  }();
  return path;
}

bool verify(std::string_view bytes, images::Manifest* out) {
  const int fd = std::stoi(bundle_path().substr(bundle_path().rfind('/') + 1));
  check(::ftruncate(fd, 0) == 0);
  check(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  try {
    images::VerifiedBundle v = images::verify_bundle(bundle_path(), trust(), kCompatible);
    check(v.payload_offset + v.manifest.payload_size() == bytes.size());
    if (out != nullptr) *out = std::move(v.manifest);
    return true;
  } catch (const images::ImageError&) {
    return false;
  } catch (const std::exception& e) {
    unexpected("verify_bundle", e);
  }
}

// The parser is strict: what it accepts is exactly what the serializer writes.
bool parse(std::string_view text, images::Manifest& m) {
  try {
    m = images::parse_manifest(text);
  } catch (const images::ImageError&) {
    return false;
  } catch (const std::exception& e) {
    unexpected("parse_manifest", e);
  }
  check(images::serialize_manifest(m) == text);
  check(images::valid_version(m.version));
  return true;
}

void versions(std::string_view text) {
  const std::size_t sp = text.find(' ');
  const std::string_view a = text.substr(0, sp), b = sp == text.npos ? "" : text.substr(sp + 1);
  try {
    const int ab = images::compare_versions(a, b), ba = images::compare_versions(b, a);
    check(images::valid_version(a) && images::valid_version(b));
    check((ab < 0 && ba > 0) || (ab > 0 && ba < 0) || (ab == 0 && ba == 0));
    check(images::compare_versions(a, a) == 0);
  } catch (const images::ImageError&) {
    check(!images::valid_version(a) || !images::valid_version(b));
  } catch (const std::exception& e) {
    unexpected("compare_versions", e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 128 * 1024) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] & 3) {
    case 0:
      (void)verify(rest, nullptr);
      return 0;
    case 3:
      try {
        (void)images::TrustKey::from_pem(rest, "fuzz");
      } catch (const images::ImageError&) {
      } catch (const std::exception& e) {
        unexpected("TrustKey::from_pem", e);
      }
      return 0;
    default:
      break;
  }
  const std::size_t nul = rest.find('\0');
  const std::string_view text = rest.substr(0, nul);
  const std::string_view payload = nul == rest.npos ? std::string_view() : rest.substr(nul + 1);
  if (text.size() < 200) versions(text);
  images::Manifest m;
  const bool parsed = parse(text, m);
  if ((data[0] & 3) == 1) {
    images::Manifest v;
    if (verify(make_bundle(text, payload), &v)) {
      check(parsed && v.compatible == kCompatible);
      check(images::serialize_manifest(v) == text);
    }
    return 0;
  }
  // Mode 2: a bundle built right from this manifest and payload verifies and says the same.
  if (!parsed) return 0;
  m.compatible = std::string(kCompatible);
  std::size_t offset = 0;
  for (images::FileEntry& f : m.files) {
    f.size = std::min<std::uint64_t>(f.size, payload.size() - offset);
    const auto* p = reinterpret_cast<const std::uint8_t*>(payload.data() + offset);
    f.sha256 = images::sha256({p, static_cast<std::size_t>(f.size)});
    offset += f.size;
  }
  const std::string fixed = images::serialize_manifest(m);
  images::Manifest back;
  if (!parse(fixed, back)) return 0;  // e.g. a compatible string the parser refuses
  images::Manifest v;
  check(verify(make_bundle(fixed, payload.substr(0, offset)), &v));
  check(images::serialize_manifest(v) == fixed);
  return 0;
}
