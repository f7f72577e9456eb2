// Bundle format: header codec, manifest text, signature checks with OpenSSL, streaming hashes, building.
#include <edge/images/bundle.h>

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>

#include "fs_util.h"

namespace edge::images {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'E', 'D', 'G', 'E', 'B', 'N', 'D', 'L'};
constexpr std::size_t kChunk = std::size_t{64} * 1024;
constexpr std::size_t kMaxTrustFile = std::size_t{64} * 1024;

void put_be(std::uint8_t* out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) out[i] = static_cast<std::uint8_t>(v & 0xFF);
}

std::uint64_t get_be(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

struct Header {
  std::uint32_t format = 0, manifest_size = 0, signature_size = 0;
  std::uint64_t payload_size = 0;
};

std::array<std::uint8_t, kHeaderSize> encode_header(const Header& h) {
  std::array<std::uint8_t, kHeaderSize> out{};
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  put_be(out.data() + 8, h.format, 4);
  put_be(out.data() + 12, h.manifest_size, 4);
  put_be(out.data() + 16, h.signature_size, 4);
  put_be(out.data() + 24, h.payload_size, 8);  // bytes 20..23 reserved, zero
  return out;
}

Header decode_header(const std::uint8_t* p) {
  if (std::memcmp(p, kMagic, sizeof kMagic) != 0) throw ImageError("not an edge firmware bundle (bad magic)");
  Header h;
  h.format = static_cast<std::uint32_t>(get_be(p + 8, 4));
  if (h.format != kFormatVersion) {
    throw ImageError("unsupported bundle format version " + std::to_string(h.format) + " (this tool reads " +
                     std::to_string(kFormatVersion) + ")");
  }
  h.manifest_size = static_cast<std::uint32_t>(get_be(p + 12, 4));
  h.signature_size = static_cast<std::uint32_t>(get_be(p + 16, 4));
  if (get_be(p + 20, 4) != 0) throw ImageError("bundle header: reserved bytes are not zero");
  h.payload_size = get_be(p + 24, 8);
  if (h.manifest_size == 0 || h.manifest_size > kMaxManifest) {
    throw ImageError("bundle header: manifest length " + std::to_string(h.manifest_size) +
                     " out of range 1.." + std::to_string(kMaxManifest));
  }
  if (h.signature_size == 0 || h.signature_size > kMaxSignature) {
    throw ImageError("bundle header: signature length " + std::to_string(h.signature_size) +
                     " out of range 1.." + std::to_string(kMaxSignature));
  }
  if (h.payload_size > kMaxFileSize * kMaxFiles) {
    throw ImageError("bundle header: payload length " + std::to_string(h.payload_size) + " out of range");
  }
  return h;
}

bool valid_path(std::string_view p) {
  if (p.empty() || p.size() > 255 || p.front() == '/' || p.back() == '/') return false;
  std::size_t start = 0;
  while (start <= p.size()) {
    const std::size_t end = std::min(p.find('/', start), p.size());
    const std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
    start = end + 1;
  }
  return true;
}

bool valid_text(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

template <class T>
bool parse_number(std::string_view s, T& out, int base = 10) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

// A decimal number spelt one way only ("7", never "07"): the signed manifest text is canonical.
template <class T>
bool parse_decimal(std::string_view s, T& out) {
  return !(s.size() > 1 && s.front() == '0') && parse_number(s, out);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

bool parse_hex32(std::string_view s, Sha256& out) {
  if (s.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    if (!parse_number(s.substr(2 * i, 2), out[i], 16)) return false;
    if (s[2 * i] >= 'A' && s[2 * i] <= 'F') return false;  // lower case only: one spelling
    if (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F') return false;
  }
  return true;
}

[[noreturn]] void bad_line(std::size_t n, const std::string& why) {
  throw ImageError("manifest line " + std::to_string(n) + ": " + why);
}

struct EvpCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

// ------------------------------------------------------------------ hashing

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    throw ImageError("OpenSSL: SHA-256 unavailable");
  }
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256Stream::update(const void* data, std::size_t size) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size);
}

Sha256 Sha256Stream::finish() {
  Sha256 out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out.data(), &len);
  return out;
}

Sha256 sha256(std::span<const std::uint8_t> data) {
  Sha256Stream s;
  s.update(data.data(), data.size());
  return s.finish();
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string iso_utc(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ------------------------------------------------------------------ versions

bool valid_version(std::string_view v) noexcept {
  if (v.empty() || v.size() > 64) return false;
  const auto parts = split(v, '.');
  if (parts.size() > 4) return false;
  for (auto p : parts) {
    std::uint32_t n = 0;
    if (p.size() > 9 || !parse_number(p, n)) return false;
  }
  return true;
}

int compare_versions(std::string_view a, std::string_view b) {
  if (!valid_version(a)) throw ImageError("malformed version '" + std::string(a) + "'");
  if (!valid_version(b)) throw ImageError("malformed version '" + std::string(b) + "'");
  const auto pa = split(a, '.'), pb = split(b, '.');
  for (std::size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
    std::uint32_t x = 0, y = 0;
    if (i < pa.size()) parse_number(pa[i], x);
    if (i < pb.size()) parse_number(pb[i], y);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

// ------------------------------------------------------------------ manifest

std::uint64_t Manifest::payload_size() const noexcept {
  std::uint64_t n = 0;
  for (const auto& f : files) n += f.size;
  return n;
}

std::string serialize_manifest(const Manifest& m) {
  std::string s = "edge-bundle " + std::to_string(m.format) + "\n";
  s += "compatible " + m.compatible + "\n";
  s += "version " + m.version + "\n";
  s += "built " + m.built + "\n";
  s += "key " + m.key + "\n";
  for (const auto& f : m.files) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", f.mode);
    s += "file " + std::string(mode) + " " + std::to_string(f.size) + " " + to_hex(f.sha256) + " " + f.path +
         "\n";
  }
  return s;
}

Manifest parse_manifest(std::string_view text) {
  if (text.empty() || text.back() != '\n') throw ImageError("manifest does not end with a newline");
  auto lines = split(text.substr(0, text.size() - 1), '\n');
  static constexpr const char* kKeys[] = {"edge-bundle", "compatible", "version", "built", "key"};
  if (lines.size() < 6)
    throw ImageError("manifest has " + std::to_string(lines.size()) + " lines, expected at least 6");
  Manifest m;
  for (std::size_t i = 0; i < 5; ++i) {
    const auto sp = lines[i].find(' ');
    if (sp == std::string_view::npos || lines[i].substr(0, sp) != kKeys[i]) {
      bad_line(i + 1, std::string("expected '") + kKeys[i] + " ...'");
    }
    const std::string_view value = lines[i].substr(sp + 1);
    if (!valid_text(value)) bad_line(i + 1, "empty or non-printable value");
    switch (i) {
      case 0:
        if (!parse_decimal(value, m.format) || m.format != kFormatVersion)
          bad_line(1, "unsupported format '" + std::string(value) + "'");
        break;
      case 1:
        m.compatible = value;
        break;
      case 2:
        if (!valid_version(value)) bad_line(3, "malformed version '" + std::string(value) + "'");
        m.version = value;
        break;
      case 3:
        if (value.size() != 20 || value[4] != '-' || value[10] != 'T' || value[19] != 'Z')
          bad_line(4, "build time is not YYYY-MM-DDTHH:MM:SSZ");
        m.built = value;
        break;
      default:
        m.key = value;
    }
  }
  if (lines.size() - 5 > kMaxFiles)
    throw ImageError("manifest lists more than " + std::to_string(kMaxFiles) + " files");
  for (std::size_t i = 5; i < lines.size(); ++i) {
    const auto f = split(lines[i], ' ');
    if (f.size() != 5 || f[0] != "file") bad_line(i + 1, "expected 'file MODE SIZE SHA256 PATH'");
    FileEntry e;
    if (f[1].size() != 4 || !parse_number(f[1], e.mode, 8)) bad_line(i + 1, "bad mode");
    // Slot files are owned by the installer: no setuid/setgid/sticky bit, nothing another
    // user or group could rewrite between install and boot.
    if ((e.mode & 07000) != 0)
      bad_line(i + 1, "mode " + std::string(f[1]) + " has a setuid, setgid or sticky bit");
    if ((e.mode & 0022) != 0) bad_line(i + 1, "mode " + std::string(f[1]) + " is group- or world-writable");
    if (!parse_decimal(f[2], e.size) || e.size > kMaxFileSize) bad_line(i + 1, "bad size");
    if (!parse_hex32(f[3], e.sha256)) bad_line(i + 1, "bad SHA-256 (64 lower-case hex digits)");
    if (!valid_path(f[4])) bad_line(i + 1, "bad path '" + std::string(f[4].substr(0, 80)) + "'");
    for (const auto& other : m.files) {
      // A file and a directory of the same name cannot both be installed.
      if (other.path == f[4] || other.path.starts_with(std::string(f[4]) + "/") ||
          std::string(f[4]).starts_with(other.path + "/"))
        bad_line(i + 1, "path '" + std::string(f[4]) + "' collides with '" + other.path + "'");
    }
    e.path = f[4];
    m.files.push_back(std::move(e));
  }
  return m;
}

// ------------------------------------------------------------------ signatures

struct TrustKey::Key {
  EVP_PKEY* pkey = nullptr;
  ~Key() { EVP_PKEY_free(pkey); }
};

TrustKey::TrustKey(std::unique_ptr<Key> key, std::string origin)
    : key_(std::move(key)), origin_(std::move(origin)) {}
TrustKey::~TrustKey() = default;
TrustKey::TrustKey(TrustKey&&) noexcept = default;
TrustKey& TrustKey::operator=(TrustKey&&) noexcept = default;

TrustKey TrustKey::from_pem_file(const fs::path& path) {
  const std::string pem = read_small_file(path, kMaxTrustFile);
  return from_pem(pem, path.string());
}

TrustKey TrustKey::from_pem(std::string_view pem, const std::string& origin) {
  // The BIO only reads pem and is freed before this returns; cppcheck 2.10 thinks it outlives pem.
  // cppcheck-suppress invalidLifetime
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                &BIO_free);
  auto key = std::make_unique<Key>();
  key->pkey = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (key->pkey == nullptr) throw ImageError("trust key " + origin + " is not a PEM public key");
  if (EVP_PKEY_get_base_id(key->pkey) != EVP_PKEY_EC || EVP_PKEY_get_bits(key->pkey) != 256) {
    throw ImageError("trust key " + origin + " is not an ECDSA P-256 key");
  }
  return TrustKey(std::move(key), origin);
}

bool TrustKey::verifies(std::span<const std::uint8_t> data, std::span<const std::uint8_t> der) const {
  std::unique_ptr<EVP_MD_CTX, EvpCtxFree> ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_->pkey) == 1 &&
         EVP_DigestVerify(ctx.get(), der.data(), der.size(), data.data(), data.size()) == 1;
}

std::vector<std::uint8_t> ecdsa_raw_to_der(std::span<const std::uint8_t, 64> raw) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(raw.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    throw ImageError("OpenSSL: cannot encode the ECDSA signature");
  }
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) throw ImageError("OpenSSL: cannot encode the ECDSA signature");
  std::vector<std::uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

// ------------------------------------------------------------------ verify

VerifiedBundle verify_bundle(const fs::path& bundle, const TrustKey& trust, std::string_view compatible) {
  Fd fd = open_read(bundle);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + bundle.string(), errno);
  if (!S_ISREG(st.st_mode)) throw ImageError(bundle.string() + " is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < kHeaderSize) {
    throw ImageError("bundle truncated: " + std::to_string(size) + " bytes, shorter than the " +
                     std::to_string(kHeaderSize) + "-byte header");
  }
  std::uint8_t raw_header[kHeaderSize];
  pread_exact(fd.get(), raw_header, sizeof raw_header, 0, bundle);
  const Header h = decode_header(raw_header);
  // All three lengths are bounded above, so this sum cannot overflow.
  const std::uint64_t declared = kHeaderSize + h.manifest_size + h.signature_size + h.payload_size;
  if (size < declared) {
    throw ImageError("bundle truncated: " + std::to_string(size) + " bytes, the header declares " +
                     std::to_string(declared));
  }
  if (size > declared) {
    throw ImageError("bundle has " + std::to_string(size - declared) + " trailing bytes after the declared " +
                     std::to_string(declared));
  }

  std::vector<std::uint8_t> manifest(h.manifest_size), signature(h.signature_size);
  pread_exact(fd.get(), manifest.data(), manifest.size(), kHeaderSize, bundle);
  pread_exact(fd.get(), signature.data(), signature.size(), kHeaderSize + h.manifest_size, bundle);
  if (!trust.verifies(manifest, signature)) {
    throw ImageError("signature does not verify with " + trust.origin() +
                     " (wrong signer, or the manifest or signature was altered)");
  }
  // Only signed text reaches the parser.
  VerifiedBundle out;
  out.path = bundle;
  out.manifest =
      parse_manifest(std::string_view(reinterpret_cast<const char*>(manifest.data()), manifest.size()));
  if (out.manifest.compatible != compatible) {
    throw ImageError("bundle is for '" + out.manifest.compatible + "', this system is '" +
                     std::string(compatible) + "'");
  }
  if (out.manifest.payload_size() != h.payload_size) {
    throw ImageError("bundle header declares " + std::to_string(h.payload_size) +
                     " payload bytes, the manifest " + std::to_string(out.manifest.payload_size()));
  }
  out.payload_offset = kHeaderSize + h.manifest_size + h.signature_size;

  std::vector<std::uint8_t> buf(kChunk);
  std::uint64_t offset = out.payload_offset;
  for (const FileEntry& f : out.manifest.files) {
    Sha256Stream hash;
    for (std::uint64_t left = f.size; left > 0;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
      pread_exact(fd.get(), buf.data(), n, offset, bundle);
      hash.update(buf.data(), n);
      offset += n;
      left -= n;
    }
    if (hash.finish() != f.sha256) {
      throw ImageError("file " + f.path +
                       ": SHA-256 does not match the manifest (payload altered or corrupt)");
    }
  }
  return out;
}

// ------------------------------------------------------------------ build

namespace {

// Hashes a source file; its size and mode as seen at open time.
FileEntry describe(const BuildInput& in) {
  if (!valid_path(in.path)) {
    throw ImageError("bundle path '" + in.path + "' is not a relative path of [A-Za-z0-9._-] components");
  }
  Fd fd = open_read(in.source);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + in.source.string(), errno);
  if (!S_ISREG(st.st_mode)) throw ImageError(in.source.string() + " is not a regular file");
  FileEntry e;
  e.path = in.path;
  // Executable or not is all a slot needs; no set-id bits, no group/world write.
  e.mode = (st.st_mode & S_IXUSR) ? 0755 : 0644;
  e.size = static_cast<std::uint64_t>(st.st_size);
  if (e.size > kMaxFileSize) throw ImageError(in.source.string() + " is too large for a bundle");
  std::vector<std::uint8_t> buf(kChunk);
  Sha256Stream hash;
  for (std::uint64_t off = 0; off < e.size;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(e.size - off, buf.size()));
    pread_exact(fd.get(), buf.data(), n, off, in.source);
    hash.update(buf.data(), n);
    off += n;
  }
  e.sha256 = hash.finish();
  return e;
}

}  // namespace

Manifest build_bundle(const BuildRequest& req, const Signer& sign) {
  Manifest m;
  m.compatible = req.compatible;
  m.version = req.version;
  m.built = iso_utc(req.built_unix);
  m.key = req.key;
  if (!valid_text(m.compatible)) throw ImageError("compatible string must be 1..128 printable characters");
  if (!valid_version(m.version)) {
    throw ImageError("version '" + m.version + "' is not 1..4 dot-separated numbers (e.g. 1.2.0)");
  }
  if (!valid_text(m.key)) throw ImageError("key name must be 1..128 printable characters");
  if (req.files.empty()) throw ImageError("a bundle needs at least one file");
  if (req.files.size() > kMaxFiles) throw ImageError("more than " + std::to_string(kMaxFiles) + " files");
  for (const auto& in : req.files) m.files.push_back(describe(in));
  const std::string text = serialize_manifest(m);
  parse_manifest(text);  // duplicate or colliding paths are refused here, before signing
  if (text.size() > kMaxManifest) throw ImageError("manifest too large");

  const std::vector<std::uint8_t> signature =
      sign(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  if (signature.empty() || signature.size() > kMaxSignature)
    throw ImageError("signer returned a bad signature");

  const fs::path tmp =
      req.out.parent_path() / ("." + req.out.filename().string() + ".tmp." + std::to_string(::getpid()));
  Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!out) throw_errno("cannot create " + tmp.string(), errno);
  try {
    const auto header = encode_header(Header{kFormatVersion, static_cast<std::uint32_t>(text.size()),
                                             static_cast<std::uint32_t>(signature.size()), m.payload_size()});
    write_all(out.get(), header.data(), header.size(), tmp);
    write_all(out.get(), text.data(), text.size(), tmp);
    write_all(out.get(), signature.data(), signature.size(), tmp);
    std::vector<std::uint8_t> buf(kChunk);
    for (std::size_t i = 0; i < m.files.size(); ++i) {
      const FileEntry& f = m.files[i];
      Fd in = open_read(req.files[i].source);
      Sha256Stream hash;
      for (std::uint64_t off = 0; off < f.size;) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(f.size - off, buf.size()));
        pread_exact(in.get(), buf.data(), n, off, req.files[i].source);
        hash.update(buf.data(), n);
        write_all(out.get(), buf.data(), n, tmp);
        off += n;
      }
      // The manifest is signed already: a source rewritten meanwhile (a build
      // still running) must not produce a bundle that fails verification later.
      if (hash.finish() != f.sha256)
        throw ImageError(req.files[i].source.string() + " changed while being packed");
    }
    fsync_fd(out.get(), tmp);
    if (::rename(tmp.c_str(), req.out.c_str()) != 0)
      throw_errno("cannot rename to " + req.out.string(), errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(req.out.parent_path().empty() ? fs::path(".") : req.out.parent_path());
  return m;
}

}  // namespace edge::images
