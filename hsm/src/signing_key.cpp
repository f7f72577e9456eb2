// Signing keys: ECDSA P-256 pairs generated in the token, found by label and CKA_ID, signing digests.
#include <edge/hsm/error.h>
#include <edge/hsm/keyset.h>
#include <edge/hsm/object.h>
#include <edge/hsm/session.h>
#include <edge/hsm/signing_key.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <system_error>

#include "hsm_impl.h"

namespace edge::hsm {

namespace fs = std::filesystem;

namespace {

constexpr std::uint8_t kMagic[4] = {'E', 'S', 'K', '1'};
constexpr std::size_t kIdHeader = 12;  // magic + i64 created

// DER of the named curve prime256v1 (OID 1.2.840.10045.3.1.7), as CKA_EC_PARAMS.
constexpr std::uint8_t kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
// SubjectPublicKeyInfo up to the uncompressed point: SEQUENCE { SEQUENCE { id-ecPublicKey,
// prime256v1 }, BIT STRING (0 unused bits) }. The point (04 | X | Y, 65 bytes) follows.
constexpr std::uint8_t kSpkiPrefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                        0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
constexpr std::size_t kPointSize = 65;

std::vector<std::uint8_t> encode_id(std::int64_t created, std::string_view name) {
  std::vector<std::uint8_t> out(kIdHeader + name.size());
  std::memcpy(out.data(), kMagic, 4);
  auto v = static_cast<std::uint64_t>(created);
  for (int i = 11; i >= 4; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
  std::memcpy(out.data() + kIdHeader, name.data(), name.size());
  return out;
}

struct DecodedId {
  std::int64_t created = 0;
  std::string name;
};

std::optional<DecodedId> decode_id(std::span<const std::uint8_t> raw) {
  if (raw.size() <= kIdHeader || std::memcmp(raw.data(), kMagic, 4) != 0) return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 4; i < kIdHeader; ++i) v = (v << 8) | raw[i];
  DecodedId id{static_cast<std::int64_t>(v),
               std::string(reinterpret_cast<const char*>(raw.data() + kIdHeader), raw.size() - kIdHeader)};
  if (!valid_signing_key_name(id.name)) return std::nullopt;
  return id;
}

void check_name(std::string_view name) {
  if (!valid_signing_key_name(name)) {
    throw HsmError("invalid signing key name: use 1..64 characters of A-Z a-z 0-9 . _ -");
  }
}

// CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 2.40); some
// modules hand out the bare point. Either way only an uncompressed P-256 point is ours.
std::optional<std::vector<std::uint8_t>> spki_of_point(std::span<const std::uint8_t> ec_point) {
  std::span<const std::uint8_t> point = ec_point;
  if (point.size() == kPointSize + 2 && point[0] == 0x04 && point[1] == kPointSize) point = point.subspan(2);
  if (point.size() != kPointSize || point[0] != 0x04) return std::nullopt;
  std::vector<std::uint8_t> der(std::begin(kSpkiPrefix), std::end(kSpkiPrefix));
  der.insert(der.end(), point.begin(), point.end());
  return der;
}

struct StoredPublic {
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  SigningKeyInfo info;
};

// Our public keys (P-256, decodable CKA_ID, label agreeing with it), optionally of one name.
std::vector<StoredPublic> scan_public(Session& s, OpCounters& counters, std::string_view name) {
  AttributeTemplate t;
  t.add_class(CKO_PUBLIC_KEY).add_key_type(CKK_EC);
  if (!name.empty()) t.add_string(CKA_LABEL, signing_key_label(name));
  counters.find.fetch_add(1, std::memory_order_relaxed);
  std::vector<StoredPublic> out;
  for (CK_OBJECT_HANDLE h : find_objects(s, t)) {
    Object o(s, h);
    const auto raw_id = o.get_bytes(CKA_ID);
    const auto label = o.get_bytes(CKA_LABEL);
    const auto params = o.get_bytes(CKA_EC_PARAMS);
    const auto point = o.get_bytes(CKA_EC_POINT);
    if (!raw_id || !label || !params || !point) continue;
    std::optional<DecodedId> id = decode_id(*raw_id);
    if (!id || (!name.empty() && id->name != name)) continue;
    if (std::string(label->begin(), label->end()) != signing_key_label(id->name)) continue;
    if (!std::equal(params->begin(), params->end(), std::begin(kP256Params), std::end(kP256Params))) continue;
    std::optional<std::vector<std::uint8_t>> der = spki_of_point(*point);
    if (!der) continue;
    out.push_back(StoredPublic{h, SigningKeyInfo{std::move(id->name), id->created, std::move(*der)}});
  }
  std::sort(out.begin(), out.end(),
            [](const StoredPublic& x, const StoredPublic& y) { return x.info.name < y.info.name; });
  return out;
}

std::vector<CK_OBJECT_HANDLE> find_private(Session& s, OpCounters& counters, std::string_view name) {
  AttributeTemplate t;
  t.add_class(CKO_PRIVATE_KEY).add_key_type(CKK_EC).add_string(CKA_LABEL, signing_key_label(name));
  counters.find.fetch_add(1, std::memory_order_relaxed);
  return find_objects(s, t);
}

void destroy_tolerant(Session& s, CK_OBJECT_HANDLE h) {
  CK_RV rv = s.functions()->C_DestroyObject(s.handle(), h);
  // Already gone (a retry after a partly done destroy, or a concurrent one).
  if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) throw Pkcs11Error("C_DestroyObject", rv);
}

struct KeyPair {
  CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
};

KeyPair generate_pair(Session& s, OpCounters& counters, std::string_view name, std::int64_t created) {
  const std::vector<std::uint8_t> id = encode_id(created, name);
  const std::string label = signing_key_label(name);
  AttributeTemplate pub;
  pub.add_class(CKO_PUBLIC_KEY)
      .add_key_type(CKK_EC)
      .add_bytes(CKA_EC_PARAMS, kP256Params)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, false)
      .add_bool(CKA_VERIFY, true)
      .add_bool(CKA_ENCRYPT, false)
      .add_bool(CKA_WRAP, false)
      .add_bool(CKA_DERIVE, false)
      .add_string(CKA_LABEL, label)
      .add_bytes(CKA_ID, id);
  AttributeTemplate priv;
  priv.add_class(CKO_PRIVATE_KEY)
      .add_key_type(CKK_EC)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, true)
      .add_bool(CKA_SENSITIVE, true)
      .add_bool(CKA_EXTRACTABLE, false)
      .add_bool(CKA_SIGN, true)
      .add_bool(CKA_SIGN_RECOVER, false)
      .add_bool(CKA_DECRYPT, false)
      .add_bool(CKA_UNWRAP, false)
      .add_bool(CKA_DERIVE, false)
      // A firmware signing key has one job for its whole life: nobody may switch
      // other uses on later, nor copy it with other flags.
      .add_bool(CKA_MODIFIABLE, false)
      .add_bool(CKA_COPYABLE, false)
      .add_string(CKA_LABEL, label)
      .add_bytes(CKA_ID, id);
  CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  KeyPair kp;
  counters.generate.fetch_add(1, std::memory_order_relaxed);
  CK_RV rv = s.functions()->C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(), priv.data(),
                                              priv.size(), &kp.pub, &kp.priv);
  if (rv != CKR_OK) throw Pkcs11Error("C_GenerateKeyPair", rv, "ECDSA P-256 signing key");
  return kp;
}

}  // namespace

bool valid_signing_key_name(std::string_view name) noexcept { return valid_key_set_name(name); }

std::string signing_key_label(std::string_view name) { return "sign/" + std::string(name); }

std::string public_key_pem(std::span<const std::uint8_t> der) {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  for (std::size_t i = 0; i < der.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, der.size() - i);
    std::uint32_t v = static_cast<std::uint32_t>(der[i]) << 16;
    if (n > 1) v |= static_cast<std::uint32_t>(der[i + 1]) << 8;
    if (n > 2) v |= der[i + 2];
    b64 += kB64[(v >> 18) & 63];
    b64 += kB64[(v >> 12) & 63];
    b64 += n > 1 ? kB64[(v >> 6) & 63] : '=';
    b64 += n > 2 ? kB64[v & 63] : '=';
  }
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (std::size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + '\n';
  pem += "-----END PUBLIC KEY-----\n";
  return pem;
}

fs::path public_key_dir(const fs::path& state_dir) { return state_dir / "keys"; }

fs::path write_public_key_pem(const fs::path& dir, const SigningKeyInfo& key) {
  check_name(key.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw HsmError("cannot create " + dir.string() + ": " + ec.message());
  fs::path path = dir / (key.name + ".pub.pem");
  const fs::path tmp = dir / ("." + key.name + ".pub.pem.tmp." + std::to_string(::getpid()));
  const std::string pem = public_key_pem(key.public_key_der);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) throw HsmError("cannot create " + tmp.string() + ": " + std::generic_category().message(errno));
  bool ok = ::fchmod(fd, 0644) == 0;  // whatever the umask: verifiers must read it
  for (std::size_t off = 0; ok && off < pem.size();) {
    const ssize_t n = ::write(fd, pem.data() + off, pem.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : e;
    ::unlink(tmp.c_str());
    throw HsmError("cannot write " + path.string() + ": " + std::generic_category().message(err));
  }
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return path;
}

SigningKeyInfo SigningKeys::create(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  auto scan = [&](Session& s) { return scan_public(s, im.counters, name); };
  const bool has_private =
      !im.with_session([&](Session& s) { return find_private(s, im.counters, name); }).empty();
  if (has_private || !im.with_session(scan).empty()) {
    throw HsmError("signing key '" + std::string(name) + "' already exists");
  }
  const std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
  im.with_session([&](Session& s) { generate_pair(s, im.counters, name, created); });
  std::vector<StoredPublic> found = im.with_session(scan);
  if (found.size() != 1) {
    // Created concurrently by somebody else (or ours is unreadable): keep none of ours.
    // Found again by CKA_ID and label in the session that destroys them: the handles
    // C_GenerateKeyPair returned belong to an earlier session (a module restart in
    // between may have given those numbers to other objects).
    im.with_session([&](Session& s) {
      const std::vector<std::uint8_t> id = encode_id(created, name);
      for (CK_OBJECT_CLASS cls : {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY}) {
        AttributeTemplate t;
        t.add_class(cls)
            .add_key_type(CKK_EC)
            .add_string(CKA_LABEL, signing_key_label(name))
            .add_bytes(CKA_ID, id);
        im.counters.find.fetch_add(1, std::memory_order_relaxed);
        for (CK_OBJECT_HANDLE h : find_objects(s, t)) destroy_tolerant(s, h);
      }
    });
    throw HsmError("signing key '" + std::string(name) +
                   (found.empty() ? "' cannot be read back after generation; removed"
                                  : "' was created concurrently by someone else; ours was removed"));
  }
  return std::move(found.front().info);
}

std::vector<SigningKeyInfo> SigningKeys::list() {
  Hsm::Impl& im = hsm_.impl();
  std::vector<StoredPublic> found =
      im.with_session([&](Session& s) { return scan_public(s, im.counters, {}); });
  std::vector<SigningKeyInfo> out;
  out.reserve(found.size());
  for (auto& f : found) out.push_back(std::move(f.info));
  return out;
}

SigningKeyInfo SigningKeys::get(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  std::vector<StoredPublic> found =
      im.with_session([&](Session& s) { return scan_public(s, im.counters, name); });
  if (found.empty()) throw HsmError("signing key '" + std::string(name) + "' does not exist");
  if (found.size() > 1) throw HsmError("signing key '" + std::string(name) + "' exists more than once");
  return std::move(found.front().info);
}

bool SigningKeys::exists(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  return !im.with_session([&](Session& s) { return scan_public(s, im.counters, name); }).empty();
}

void SigningKeys::destroy(std::string_view name) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  const std::size_t n = im.with_session([&](Session& s) {
    std::size_t count = 0;
    for (const auto& p : scan_public(s, im.counters, name)) {
      destroy_tolerant(s, p.handle);
      ++count;
    }
    for (CK_OBJECT_HANDLE h : find_private(s, im.counters, name)) {
      destroy_tolerant(s, h);
      ++count;
    }
    return count;
  });
  if (n == 0) throw HsmError("signing key '" + std::string(name) + "' does not exist");
}

EcdsaSignature SigningKeys::sign_digest(std::string_view name, const Sha256Digest& digest) {
  check_name(name);
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    // Looked up inside the retried unit: a refind retry must not reuse a stale handle.
    const std::vector<CK_OBJECT_HANDLE> keys = find_private(s, im.counters, name);
    if (keys.empty()) throw HsmError("signing key '" + std::string(name) + "' does not exist");
    if (keys.size() > 1) throw HsmError("signing key '" + std::string(name) + "' exists more than once");
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    CK_RV rv = s.functions()->C_SignInit(s.handle(), &mech, keys.front());
    if (rv != CKR_OK) throw Pkcs11Error("C_SignInit", rv, "CKM_ECDSA");
    EcdsaSignature sig{};
    CK_ULONG len = sig.size();
    rv = s.functions()->C_Sign(s.handle(), const_cast<CK_BYTE_PTR>(digest.data()),
                               static_cast<CK_ULONG>(digest.size()), sig.data(), &len);
    if (rv != CKR_OK) throw Pkcs11Error("C_Sign", rv, "CKM_ECDSA");
    if (len != sig.size()) {
      throw HsmError("C_Sign(CKM_ECDSA) returned " + std::to_string(len) + " bytes, not 64: not a P-256 key");
    }
    return sig;
  });
}

}  // namespace edge::hsm
