// Firmware bundles: the signed manifest format, building (signed in the HSM) and verification (OpenSSL).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace edge::images {

// Every refusal of a bundle, a state file or an argument: what() is one line
// saying why ("bundle truncated: ...", "signature does not verify ...").
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Layout (docs/firmware.md has it byte by byte):
//   header (32 bytes) | manifest (text) | signature (DER ECDSA) | payload (file contents)
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::uint32_t kMaxManifest = 64 * 1024;
inline constexpr std::uint32_t kMaxSignature = 256;
inline constexpr std::size_t kMaxFiles = 256;
inline constexpr std::uint64_t kMaxFileSize = 1ull << 36;  // 64 GiB: bounds the offset arithmetic

using Sha256 = std::array<std::uint8_t, 32>;

struct FileEntry {
  std::string path;           // relative, '/'-separated, [A-Za-z0-9._-] components, no '.' or '..'
  std::uint32_t mode = 0644;  // permission bits only (0..0777)
  std::uint64_t size = 0;
  Sha256 sha256{};
};

struct Manifest {
  std::uint32_t format = kFormatVersion;
  std::string compatible;  // product / hardware the bundle is for
  std::string version;     // 1..4 dot-separated decimal numbers
  std::string built;       // UTC "YYYY-MM-DDTHH:MM:SSZ"
  std::string key;         // name of the signing key (informational; trust decides)
  // Rollback index: raised by the release process whenever older bundles must
  // no longer install (a security fix). Monotonic, independent of `version`;
  // a slot store refuses a bundle below the index it has committed (slots.h).
  // Signed like the rest: the line "rollback N" (N >= 1) after "key"; no line
  // means 0, so there is one spelling of each manifest.
  std::uint32_t rollback = 0;
  std::vector<FileEntry> files;  // payload order

  std::uint64_t payload_size() const noexcept;
};

// The manifest's exact text (what the signature covers).
std::string serialize_manifest(const Manifest& m);
// Strict parser of that text; throws ImageError naming the line.
Manifest parse_manifest(std::string_view text);

// <0, 0, >0 like strcmp, comparing numerically component by component ("1.10" > "1.9");
// missing components count as 0. Throws ImageError for a malformed version.
int compare_versions(std::string_view a, std::string_view b);
bool valid_version(std::string_view v) noexcept;

std::string to_hex(std::span<const std::uint8_t> bytes);
std::string iso_utc(std::int64_t unix_seconds);

// A public key verifiers trust (ECDSA P-256). Loaded from PEM, independent of any HSM.
class TrustKey {
 public:
  static TrustKey from_pem_file(const std::filesystem::path& path);  // bounded read
  static TrustKey from_pem(std::string_view pem, const std::string& origin);
  ~TrustKey();
  TrustKey(TrustKey&&) noexcept;
  TrustKey& operator=(TrustKey&&) noexcept;
  TrustKey(const TrustKey&) = delete;
  TrustKey& operator=(const TrustKey&) = delete;

  // EVP_DigestVerify(SHA-256) of a DER ECDSA signature over `data`.
  bool verifies(std::span<const std::uint8_t> data, std::span<const std::uint8_t> der_signature) const;
  const std::string& origin() const noexcept { return origin_; }

 private:
  struct Key;
  TrustKey(std::unique_ptr<Key> key, std::string origin);
  std::unique_ptr<Key> key_;
  std::string origin_;
};

// The keys an installed system trusts (as RAUC's keyring): every "*.pem" file
// of one directory, each an EC P-256 public key (a key rotation ships the new
// key next to the old one). A bundle verifies when any of them verifies it.
struct Keyring {
  std::string origin;  // "keyring /etc/edge/keyring" or "key PATH", for messages and the audit log
  std::vector<TrustKey> keys;
};
inline constexpr std::size_t kMaxKeyringKeys = 32;
// Refuses a missing or unreadable directory, one without a key, more than
// kMaxKeyringKeys keys, and a .pem file that is not a P-256 public key.
Keyring load_keyring(const std::filesystem::path& dir);
// One key file (edge-image --trust): a keyring of one.
Keyring keyring_of_file(const std::filesystem::path& pem);

// A bundle whose header, signature, compatibility and every file hash were checked.
struct VerifiedBundle {
  std::filesystem::path path;
  Manifest manifest;
  std::uint64_t payload_offset = 0;  // where the first file's bytes start
};

// Checks in this order, refusing at the first failure with the reason: header (magic,
// format, lengths within bounds, file size exactly as declared: truncation and trailing
// bytes), signature over the manifest with `trust`, manifest syntax, compatibility,
// payload length, then the SHA-256 of every file, streamed (memory stays bounded
// whatever the bundle declares).
VerifiedBundle verify_bundle(const std::filesystem::path& bundle, const TrustKey& trust,
                             std::string_view compatible);
// The same with any key of `trust` (the signature step fails only when none verifies).
VerifiedBundle verify_bundle(const std::filesystem::path& bundle, const Keyring& trust,
                             std::string_view compatible);

// Signs the manifest text; returns a DER ECDSA-Sig-Value.
using Signer = std::function<std::vector<std::uint8_t>(std::span<const std::uint8_t> manifest)>;

struct BuildInput {
  std::string path;              // path inside the bundle / slot
  std::filesystem::path source;  // file to pack
};

struct BuildRequest {
  std::string compatible, version, key;
  std::int64_t built_unix = 0;
  std::vector<BuildInput> files;
  std::filesystem::path out;
  std::uint32_t rollback = 0;  // Manifest::rollback
};

// Hashes the inputs, signs the manifest and writes the bundle atomically (temp file,
// fsync, rename, fsync dir). A source that changes while being packed is refused.
Manifest build_bundle(const BuildRequest& request, const Signer& sign);

// A raw PKCS#11 ECDSA signature (r || s, 32 bytes each) as DER ECDSA-Sig-Value.
std::vector<std::uint8_t> ecdsa_raw_to_der(std::span<const std::uint8_t, 64> raw);

// Streaming SHA-256 of a file region / whole file.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void update(const void* data, std::size_t size);
  Sha256 finish();

 private:
  void* ctx_;
};
Sha256 sha256(std::span<const std::uint8_t> data);

}  // namespace edge::images
