// CellKeys: transport key pair, peer public keys, escrow and verify copies, RSA-OAEP wrap/unwrap.
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset.h>
#include <edge/hsm/module.h>
#include <edge/hsm/object.h>
#include <edge/hsm/session.h>
#include <edge/hsm/slot.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "hsm_impl.h"
#include "keyset_store.h"

namespace edge::hsm {
namespace {

constexpr std::uint8_t kTransportId[4] = {'E', 'C', 'T', '1'};
constexpr std::uint8_t kPeerIdMagic[4] = {'E', 'C', 'P', '1'};
constexpr std::uint8_t kEscrowIdMagic[4] = {'E', 'K', 'E', '1'};
constexpr std::size_t kMinPeerBits = 2048;
constexpr std::size_t kMaxPeerBits = 4096;

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

std::string hex(std::span<const std::uint8_t> b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(b.size() * 2);
  for (const std::uint8_t x : b) {
    out.push_back(kDigits[x >> 4]);
    out.push_back(kDigits[x & 0xf]);
  }
  return out;
}

// ---- DER, only as much as an RSA SubjectPublicKeyInfo needs ----

void put_length(std::vector<std::uint8_t>& out, std::size_t n) {
  if (n < 0x80) {
    out.push_back(static_cast<std::uint8_t>(n));
    return;
  }
  std::array<std::uint8_t, sizeof(std::size_t)> tmp{};
  std::size_t k = 0;
  for (std::size_t v = n; v != 0; v >>= 8) tmp[k++] = static_cast<std::uint8_t>(v & 0xff);
  out.push_back(static_cast<std::uint8_t>(0x80 | k));
  while (k > 0) out.push_back(tmp[--k]);
}

std::vector<std::uint8_t> tlv(std::uint8_t tag, std::span<const std::uint8_t> content) {
  std::vector<std::uint8_t> out{tag};
  put_length(out, content.size());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

std::vector<std::uint8_t> der_unsigned(std::span<const std::uint8_t> be) {
  std::size_t i = 0;
  while (i + 1 < be.size() && be[i] == 0) ++i;
  std::vector<std::uint8_t> v;
  if (be.empty() || (be[i] & 0x80) != 0) v.push_back(0);
  v.insert(v.end(), be.begin() + static_cast<std::ptrdiff_t>(i), be.end());
  return tlv(0x02, v);
}

constexpr std::uint8_t kRsaAlgorithm[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                          0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};

// Reads one TLV of `tag` at `pos` (definite lengths, minimal long form), returns its content.
std::span<const std::uint8_t> read_tlv(std::span<const std::uint8_t> in, std::size_t& pos, std::uint8_t tag) {
  const auto bad = [](const char* why) { return CellKeyError(std::string("malformed public key: ") + why); };
  if (pos + 2 > in.size() || in[pos] != tag) throw bad("unexpected element");
  std::size_t len = in[pos + 1];
  pos += 2;
  if ((len & 0x80) != 0) {
    const std::size_t k = len & 0x7f;
    if (k == 0 || k > 2 || pos + k > in.size()) throw bad("bad length");
    len = 0;
    for (std::size_t i = 0; i < k; ++i) len = (len << 8) | in[pos + i];
    if (len < 0x80 || (k == 2 && len < 0x100)) throw bad("length not minimal");
    pos += k;
  }
  if (len > in.size() - pos) throw bad("truncated");
  std::span<const std::uint8_t> content = in.subspan(pos, len);
  pos += len;
  return content;
}

std::vector<std::uint8_t> read_unsigned(std::span<const std::uint8_t> in, std::size_t& pos) {
  std::span<const std::uint8_t> v = read_tlv(in, pos, 0x02);
  if (v.empty() || (v[0] & 0x80) != 0) throw CellKeyError("malformed public key: negative or empty integer");
  if (v.size() > 1 && v[0] == 0 && (v[1] & 0x80) == 0)
    throw CellKeyError("malformed public key: integer not minimal");
  if (v[0] == 0) v = v.subspan(1);
  return {v.begin(), v.end()};
}

std::size_t bit_length(std::span<const std::uint8_t> be) {
  std::size_t i = 0;
  while (i < be.size() && be[i] == 0) ++i;
  if (i == be.size()) return 0;
  std::size_t bits = (be.size() - i - 1) * 8;
  for (std::uint8_t top = be[i]; top != 0; top >>= 1) ++bits;
  return bits;
}

// ---- objects ----

AttributeTemplate& transport_match(AttributeTemplate& t, CK_OBJECT_CLASS cls) {
  t.add_class(cls)
      .add_key_type(CKK_RSA)
      .add_string(CKA_LABEL, std::string(kTransportKeyLabel))
      .add_bytes(CKA_ID, kTransportId);
  return t;
}

std::vector<std::uint8_t> peer_id(std::string_view member) {
  std::vector<std::uint8_t> id(std::begin(kPeerIdMagic), std::end(kPeerIdMagic));
  id.insert(id.end(), member.begin(), member.end());
  return id;
}

AttributeTemplate& peer_match(AttributeTemplate& t, std::string_view member) {
  t.add_class(CKO_PUBLIC_KEY)
      .add_key_type(CKK_RSA)
      .add_string(CKA_LABEL, std::string(kPeerKeyLabelPrefix) + std::string(member))
      .add_bytes(CKA_ID, peer_id(member));
  return t;
}

std::string escrow_label(std::string_view set, std::uint32_t version) {
  return version_label(set, version) + "/escrow";
}

std::vector<std::uint8_t> escrow_id(const KeyId& id) {
  std::vector<std::uint8_t> raw = encode_key_id(id);
  std::copy(std::begin(kEscrowIdMagic), std::end(kEscrowIdMagic), raw.begin());
  return raw;
}

AttributeTemplate& escrow_match(AttributeTemplate& t, std::string_view set, std::uint32_t version) {
  t.add_class(CKO_SECRET_KEY)
      .add_key_type(CKK_GENERIC_SECRET)
      .add_string(CKA_LABEL, escrow_label(set, version));
  return t;
}

AttributeTemplate& version_match(AttributeTemplate& t, std::string_view set, std::uint32_t version) {
  t.add_class(CKO_SECRET_KEY)
      .add_key_type(CKK_GENERIC_SECRET)
      .add_string(CKA_LABEL, version_label(set, version));
  return t;
}

// The one object a template finds, or nothing; CellKeyError when there are several.
std::optional<CK_OBJECT_HANDLE> find_one(Session& s, OpCounters& c, AttributeTemplate& t,
                                         const std::string& what) {
  c.find.fetch_add(1, std::memory_order_relaxed);
  const std::vector<CK_OBJECT_HANDLE> found = find_objects(s, t, 2);
  if (found.size() > 1) throw CellKeyError(what + " exists more than once in the token");
  if (found.empty()) return std::nullopt;
  return found.front();
}

// The attributes every key a transport key unwraps must have: a sensitive generic
// secret that can be wrapped again only under a key the SO trusts.
AttributeTemplate unwrap_template() {
  AttributeTemplate t;
  t.add_class(CKO_SECRET_KEY)
      .add_key_type(CKK_GENERIC_SECRET)
      .add_bool(CKA_SENSITIVE, true)
      .add_bool(CKA_WRAP_WITH_TRUSTED, true);
  return t;
}

// The escrow copy's policy: the version's value, extractable only under a trusted
// key, no usage. `id` null: the session key a new version is generated as (no label).
AttributeTemplate escrow_template(const KeyId* id) {
  AttributeTemplate t;
  t.add_class(CKO_SECRET_KEY)
      .add_key_type(CKK_GENERIC_SECRET)
      .add_bool(CKA_TOKEN, id != nullptr)
      .add_bool(CKA_PRIVATE, true)
      .add_bool(CKA_SENSITIVE, true)
      .add_bool(CKA_EXTRACTABLE, true)
      .add_bool(CKA_WRAP_WITH_TRUSTED, true)
      .add_bool(CKA_SIGN, false)
      .add_bool(CKA_VERIFY, false)
      .add_bool(CKA_ENCRYPT, false)
      .add_bool(CKA_DECRYPT, false)
      .add_bool(CKA_WRAP, false)
      .add_bool(CKA_UNWRAP, false)
      .add_bool(CKA_DERIVE, false)
      .add_bool(CKA_COPYABLE, false);
  if (id != nullptr)
    t.add_string(CKA_LABEL, escrow_label(id->set, id->version)).add_bytes(CKA_ID, escrow_id(*id));
  // Last: SoftHSM applies a C_UnwrapKey template in order and refuses every
  // attribute after CKA_MODIFIABLE false (CKR_ATTRIBUTE_READ_ONLY).
  t.add_bool(CKA_MODIFIABLE, false);
  return t;
}

// The verify copy: the MAC key policy of every version (mac_key_template: sensitive,
// never extractable, sign/verify only, modifiable for retirement), unwrapped, and
// like everything the transport key unwraps, wrappable only under trusted keys.
AttributeTemplate verify_template(const KeyId& id) {
  AttributeTemplate t = mac_key_template(true, /*modifiable=*/true, /*generated=*/false);
  t.add_bool(CKA_WRAP_WITH_TRUSTED, true)
      .add_string(CKA_LABEL, version_label(id.set, id.version))
      .add_bytes(CKA_ID, encode_key_id(id));
  return t;
}

CK_RSA_PKCS_OAEP_PARAMS oaep_params() { return {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0}; }

std::vector<std::uint8_t> digest_sha256(Session& s, std::span<const std::uint8_t> data) {
  CK_MECHANISM mech{CKM_SHA256, nullptr, 0};
  CK_RV rv = s.functions()->C_DigestInit(s.handle(), &mech);
  if (rv != CKR_OK) throw Pkcs11Error("C_DigestInit", rv, "transport key fingerprint");
  std::vector<std::uint8_t> out(32);
  CK_ULONG len = out.size();
  rv = s.functions()->C_Digest(s.handle(), const_cast<CK_BYTE_PTR>(data.data()),
                               static_cast<CK_ULONG>(data.size()), out.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_Digest", rv, "transport key fingerprint");
  out.resize(len);
  return out;
}

std::string fingerprint_of(Session& s, std::span<const std::uint8_t> spki) {
  return "sha256:" + hex(digest_sha256(s, spki));
}

TransportPublicKey public_of(Session& s, CK_OBJECT_HANDLE pub) {
  Object o(s, pub);
  std::optional<std::vector<std::uint8_t>> n = o.get_bytes(CKA_MODULUS);
  std::optional<std::vector<std::uint8_t>> e = o.get_bytes(CKA_PUBLIC_EXPONENT);
  if (!n || !e) throw CellKeyError("a transport public key without a readable modulus or exponent");
  TransportPublicKey out;
  out.spki = encode_rsa_spki(*n, *e);
  out.fingerprint = fingerprint_of(s, out.spki);
  return out;
}

CK_OBJECT_HANDLE the_transport(Session& s, OpCounters& c, CK_OBJECT_CLASS cls) {
  AttributeTemplate t;
  std::optional<CK_OBJECT_HANDLE> h = find_one(s, c, transport_match(t, cls), "the transport key");
  if (!h) throw CellKeyError("this HSM has no cell transport key (edge-hsm cell init)");
  return *h;
}

std::string kcv(Session& s, OpCounters& c, CK_OBJECT_HANDLE key) {
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  CK_RV rv = s.functions()->C_SignInit(s.handle(), &mech, key);
  if (rv != CKR_OK) throw Pkcs11Error("C_SignInit", rv, "key check value");
  std::array<std::uint8_t, 32> mac{};
  CK_ULONG len = mac.size();
  std::vector<std::uint8_t> in = bytes_of(kCheckValueInput);
  c.sign.fetch_add(1, std::memory_order_relaxed);
  rv = s.functions()->C_Sign(s.handle(), in.data(), static_cast<CK_ULONG>(in.size()), mac.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_Sign", rv, "key check value");
  return hex(std::span<const std::uint8_t>(mac.data(), 8));
}

void destroy_quietly(Session& s, CK_OBJECT_HANDLE h) noexcept {
  if (h != CK_INVALID_HANDLE) s.functions()->C_DestroyObject(s.handle(), h);
}

CK_OBJECT_HANDLE unwrap(Session& s, OpCounters& c, CK_OBJECT_HANDLE priv,
                        std::span<const std::uint8_t> wrapped, AttributeTemplate& t, const char* what) {
  CK_RSA_PKCS_OAEP_PARAMS p = oaep_params();
  CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &p, sizeof p};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  c.generate.fetch_add(1, std::memory_order_relaxed);
  const CK_RV rv =
      s.functions()->C_UnwrapKey(s.handle(), &mech, priv, const_cast<CK_BYTE_PTR>(wrapped.data()),
                                 static_cast<CK_ULONG>(wrapped.size()), t.data(), t.size(), &h);
  if (rv == CKR_OK) return h;
  // A blob that does not decrypt is bad input, not a fault of the HSM: SoftHSM
  // answers a failed OAEP decoding with CKR_GENERAL_ERROR, which the recovery
  // policy would take for a broken device (and stop minting). When the session
  // still answers, it is the blob.
  const bool blob_rv = rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID ||
                       rv == CKR_ENCRYPTED_DATA_LEN_RANGE || rv == CKR_WRAPPED_KEY_INVALID ||
                       rv == CKR_WRAPPED_KEY_LEN_RANGE;
  CK_SESSION_INFO info{};
  if (blob_rv && s.try_info(info) == CKR_OK) {
    throw CellKeyError(
        std::string("the blob does not unwrap under this member's transport key (made for another "
                    "member, or changed on the way): C_UnwrapKey of the ") +
        what + " failed with " + Pkcs11Error("C_UnwrapKey", rv).what());
  }
  throw Pkcs11Error("C_UnwrapKey", rv, what);
}

std::vector<std::uint8_t> wrap(Session& s, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                               const std::string& to) {
  CK_RSA_PKCS_OAEP_PARAMS p = oaep_params();
  CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &p, sizeof p};
  CK_ULONG len = 0;
  CK_RV rv = s.functions()->C_WrapKey(s.handle(), &mech, wrapping, key, nullptr, &len);
  if (rv == CKR_KEY_NOT_WRAPPABLE) {
    throw CellKeyError("the HSM refuses to wrap under " + to +
                       ": its transport key is not marked trusted by the SO (edge-hsm cell trust)");
  }
  if (rv != CKR_OK) throw Pkcs11Error("C_WrapKey", rv, "for " + to);
  std::vector<std::uint8_t> out(len);
  rv = s.functions()->C_WrapKey(s.handle(), &mech, wrapping, key, out.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_WrapKey", rv, "for " + to);
  out.resize(len);
  return out;
}

// The SO-imported (CKA_TRUSTED) public key of a member: what the HSM will wrap
// under. Untrusted objects with the same label (anyone with the user PIN can
// create one) are not found.
CK_OBJECT_HANDLE trusted_peer(Session& s, OpCounters& c, std::string_view member) {
  AttributeTemplate t;
  peer_match(t, member).add_bool(CKA_TRUSTED, true);
  std::optional<CK_OBJECT_HANDLE> h =
      find_one(s, c, t, "the trusted key of member '" + std::string(member) + "'");
  if (!h) {
    throw CellKeyError("member '" + std::string(member) +
                       "' has no trusted transport key in this HSM (the SO admits it: edge-hsm cell trust)");
  }
  return *h;
}

void check_member(std::string_view member) {
  if (!valid_member_id(member))
    throw CellKeyError("'" + std::string(member) + "' is not a member id (1-64 of A-Z a-z 0-9 . _ -)");
}

void check_set(std::string_view set, std::uint32_t version) {
  if (!valid_key_set_name(set)) throw CellKeyError("'" + std::string(set) + "' is not a key set name");
  if (version == 0) throw CellKeyError("key-set versions start at 1");
}

// Unwraps `wrapped` into both copies of `id`; checks the verify copy's check value
// against `expected` when it is not empty. Returns the check value. Leaves nothing
// behind on failure.
std::string unwrap_both(Session& s, OpCounters& c, CK_OBJECT_HANDLE priv,
                        std::span<const std::uint8_t> wrapped, const KeyId& id, std::string_view expected) {
  AttributeTemplate vt = verify_template(id);
  const CK_OBJECT_HANDLE v = unwrap(s, c, priv, wrapped, vt, "verify copy");
  CK_OBJECT_HANDLE e = CK_INVALID_HANDLE;
  try {
    AttributeTemplate et = escrow_template(&id);
    e = unwrap(s, c, priv, wrapped, et, "escrow copy");
    std::string value = kcv(s, c, v);
    if (!expected.empty() && value != expected) {
      throw CellKeyError("the unwrapped key's check value " + value + " is not the published " +
                         std::string(expected) + ": refused, nothing kept");
    }
    return value;
  } catch (...) {
    destroy_quietly(s, e);
    destroy_quietly(s, v);
    throw;
  }
}

}  // namespace

bool valid_member_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == '-';
  });
}

std::vector<std::uint8_t> encode_rsa_spki(std::span<const std::uint8_t> modulus,
                                          std::span<const std::uint8_t> exponent) {
  std::vector<std::uint8_t> key = der_unsigned(modulus);
  const std::vector<std::uint8_t> e = der_unsigned(exponent);
  key.insert(key.end(), e.begin(), e.end());
  std::vector<std::uint8_t> bits{0x00};
  const std::vector<std::uint8_t> seq = tlv(0x30, key);
  bits.insert(bits.end(), seq.begin(), seq.end());
  std::vector<std::uint8_t> body(std::begin(kRsaAlgorithm), std::end(kRsaAlgorithm));
  const std::vector<std::uint8_t> bs = tlv(0x03, bits);
  body.insert(body.end(), bs.begin(), bs.end());
  return tlv(0x30, body);
}

RsaPublicParts parse_rsa_spki(std::span<const std::uint8_t> spki) {
  std::size_t pos = 0;
  std::span<const std::uint8_t> body = read_tlv(spki, pos, 0x30);
  if (pos != spki.size()) throw CellKeyError("malformed public key: bytes after the key");
  std::size_t bpos = 0;
  const std::size_t alg_start = bpos;
  read_tlv(body, bpos, 0x30);
  if (!std::equal(body.begin() + static_cast<std::ptrdiff_t>(alg_start),
                  body.begin() + static_cast<std::ptrdiff_t>(bpos), std::begin(kRsaAlgorithm),
                  std::end(kRsaAlgorithm))) {
    throw CellKeyError("the public key is not an RSA key (rsaEncryption, NULL parameters)");
  }
  std::span<const std::uint8_t> bits = read_tlv(body, bpos, 0x03);
  if (bpos != body.size()) throw CellKeyError("malformed public key: trailing elements");
  if (bits.empty() || bits[0] != 0) throw CellKeyError("malformed public key: unused bits in the key");
  bits = bits.subspan(1);
  std::size_t kpos = 0;
  std::span<const std::uint8_t> seq = read_tlv(bits, kpos, 0x30);
  if (kpos != bits.size()) throw CellKeyError("malformed public key: trailing bytes in the key");
  std::size_t spos = 0;
  RsaPublicParts out;
  out.modulus = read_unsigned(seq, spos);
  out.exponent = read_unsigned(seq, spos);
  if (spos != seq.size()) throw CellKeyError("malformed public key: trailing integers");
  const std::size_t n_bits = bit_length(out.modulus);
  if (n_bits < kMinPeerBits || n_bits > kMaxPeerBits) {
    throw CellKeyError("the RSA key has " + std::to_string(n_bits) + " bits; a transport key has " +
                       std::to_string(kMinPeerBits) + " to " + std::to_string(kMaxPeerBits));
  }
  if (out.exponent.empty() || (out.exponent.back() & 1) == 0 || bit_length(out.exponent) < 17 ||
      bit_length(out.exponent) > 32) {
    throw CellKeyError("the RSA public exponent is not an odd value of 17 to 32 bits (65537 is usual)");
  }
  return out;
}

bool CellKeys::has_transport_key() {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate t;
    return find_one(s, im.counters, transport_match(t, CKO_PRIVATE_KEY), "the transport key").has_value();
  });
}

TransportPublicKey CellKeys::create_transport_key() {
  Hsm::Impl& im = hsm_.impl();
  if (has_transport_key()) throw CellKeyError("this HSM has a cell transport key already");
  return im.with_session([&](Session& s) {
    AttributeTemplate pub;
    const std::uint8_t e65537[] = {0x01, 0x00, 0x01};
    pub.add_class(CKO_PUBLIC_KEY)
        .add_key_type(CKK_RSA)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, false)
        .add_bool(CKA_WRAP, true)
        .add_bool(CKA_ENCRYPT, false)
        .add_bool(CKA_VERIFY, false)
        .add_bool(CKA_VERIFY_RECOVER, false)
        .add_bool(CKA_DERIVE, false)
        // Modifiable so that the SO can set CKA_TRUSTED (the admission of this member).
        .add_bool(CKA_MODIFIABLE, true)
        .add_ulong(CKA_MODULUS_BITS, kTransportKeyBits)
        .add_bytes(CKA_PUBLIC_EXPONENT, e65537)
        .add_string(CKA_LABEL, std::string(kTransportKeyLabel))
        .add_bytes(CKA_ID, kTransportId);
    AttributeTemplate priv;
    AttributeTemplate ut = unwrap_template();
    std::vector<std::uint8_t> ut_bytes(reinterpret_cast<const std::uint8_t*>(ut.data()),
                                       reinterpret_cast<const std::uint8_t*>(ut.data() + ut.size()));
    priv.add_class(CKO_PRIVATE_KEY)
        .add_key_type(CKK_RSA)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, true)
        .add_bool(CKA_SENSITIVE, true)
        .add_bool(CKA_EXTRACTABLE, false)
        .add_bool(CKA_UNWRAP, true)
        .add_bool(CKA_DECRYPT, false)
        .add_bool(CKA_SIGN, false)
        .add_bool(CKA_SIGN_RECOVER, false)
        .add_bool(CKA_DERIVE, false)
        .add_bool(CKA_MODIFIABLE, false)
        .add_bool(CKA_COPYABLE, false)
        .add_bytes(CKA_UNWRAP_TEMPLATE, ut_bytes)
        .add_string(CKA_LABEL, std::string(kTransportKeyLabel))
        .add_bytes(CKA_ID, kTransportId);
    CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
    im.counters.generate.fetch_add(1, std::memory_order_relaxed);
    const CK_RV rv = s.functions()->C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(), priv.data(),
                                                      priv.size(), &hpub, &hpriv);
    if (rv != CKR_OK) throw Pkcs11Error("C_GenerateKeyPair", rv, "cell transport key");
    return public_of(s, hpub);
  });
}

TransportPublicKey CellKeys::transport_public_key() {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session(
      [&](Session& s) { return public_of(s, the_transport(s, im.counters, CKO_PUBLIC_KEY)); });
}

std::vector<PeerKey> CellKeys::peers() {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate t;
    t.add_class(CKO_PUBLIC_KEY).add_key_type(CKK_RSA);
    im.counters.find.fetch_add(1, std::memory_order_relaxed);
    std::vector<PeerKey> out;
    for (CK_OBJECT_HANDLE h : find_objects(s, t)) {
      Object o(s, h);
      std::optional<std::vector<std::uint8_t>> id = o.get_bytes(CKA_ID);
      std::optional<std::vector<std::uint8_t>> label = o.get_bytes(CKA_LABEL);
      if (!id || id->size() <= 4 || !std::equal(kPeerIdMagic, kPeerIdMagic + 4, id->begin())) continue;
      const std::string member(id->begin() + 4, id->end());
      if (!valid_member_id(member) || !label ||
          std::string(label->begin(), label->end()) != std::string(kPeerKeyLabelPrefix) + member)
        continue;
      PeerKey p;
      p.member = member;
      p.fingerprint = public_of(s, h).fingerprint;
      p.trusted = o.get_bool(CKA_TRUSTED).value_or(false);
      out.push_back(std::move(p));
    }
    std::sort(out.begin(), out.end(), [](const PeerKey& a, const PeerKey& b) { return a.member < b.member; });
    return out;
  });
}

bool CellKeys::remove_peer(std::string_view member) {
  check_member(member);
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate t;
    std::optional<CK_OBJECT_HANDLE> h = find_one(s, im.counters, peer_match(t, member), "peer key");
    if (!h) return false;
    const CK_RV rv = s.functions()->C_DestroyObject(s.handle(), *h);
    if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) throw Pkcs11Error("C_DestroyObject", rv, "peer key");
    return true;
  });
}

std::string CellKeys::generate_version(std::string_view self, std::string_view set, std::uint32_t version,
                                       std::int64_t created, std::uint32_t retain) {
  check_member(self);
  check_set(set, version);
  const KeyId id{version, created, retain, std::string(set)};
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate probe;
    if (find_one(s, im.counters, version_match(probe, set, version), "the version"))
      throw CellKeyError("version " + std::to_string(version) + " of '" + std::string(set) +
                         "' exists already");
    const CK_OBJECT_HANDLE priv = the_transport(s, im.counters, CKO_PRIVATE_KEY);
    const CK_OBJECT_HANDLE pub = trusted_peer(s, im.counters, self);
    // A generated key that is extractable under trusted keys only, wrapped to
    // ourselves and unwrapped as the two copies every member holds; the
    // generated one is destroyed again.
    AttributeTemplate g = escrow_template(nullptr);
    g.add_ulong(kKeyLengthAttribute, kKeyBytes);
    im.counters.generate.fetch_add(1, std::memory_order_relaxed);
    const CK_OBJECT_HANDLE fresh = generate_key(s, CKM_GENERIC_SECRET_KEY_GEN, g);
    try {
      const std::vector<std::uint8_t> blob = wrap(s, pub, fresh, "this member's own transport key");
      std::string value = unwrap_both(s, im.counters, priv, blob, id, {});
      destroy_quietly(s, fresh);
      return value;
    } catch (...) {
      destroy_quietly(s, fresh);
      throw;
    }
  });
}

std::vector<std::uint8_t> CellKeys::wrap_version_for(std::string_view set, std::uint32_t version,
                                                     std::string_view member) {
  check_set(set, version);
  check_member(member);
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    const CK_OBJECT_HANDLE peer = trusted_peer(s, im.counters, member);
    AttributeTemplate et;
    std::optional<CK_OBJECT_HANDLE> escrow =
        find_one(s, im.counters, escrow_match(et, set, version), "escrow copy");
    if (!escrow) {
      throw CellKeyError("version " + std::to_string(version) + " of '" + std::string(set) +
                         "' has no escrow copy here (not a cell version, or destroyed)");
    }
    return wrap(s, peer, *escrow, "member '" + std::string(member) + "'");
  });
}

void CellKeys::import_version(std::string_view set, std::uint32_t version, std::int64_t created,
                              std::uint32_t retain, std::span<const std::uint8_t> wrapped,
                              std::string_view expected_check_value) {
  check_set(set, version);
  if (expected_check_value.size() != 16) throw CellKeyError("a check value is 16 hex digits");
  const KeyId id{version, created, retain, std::string(set)};
  Hsm::Impl& im = hsm_.impl();
  im.with_session([&](Session& s) {
    AttributeTemplate probe;
    if (find_one(s, im.counters, version_match(probe, set, version), "the version"))
      throw CellKeyError("version " + std::to_string(version) + " of '" + std::string(set) +
                         "' exists already");
    const CK_OBJECT_HANDLE priv = the_transport(s, im.counters, CKO_PRIVATE_KEY);
    unwrap_both(s, im.counters, priv, wrapped, id, expected_check_value);
  });
}

std::string CellKeys::check_value(std::string_view set, std::uint32_t version) {
  check_set(set, version);
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate t;
    std::optional<CK_OBJECT_HANDLE> h =
        find_one(s, im.counters, version_match(t, set, version), "the version");
    if (!h) throw CellKeyError("no version " + std::to_string(version) + " of '" + std::string(set) + "'");
    return kcv(s, im.counters, *h);
  });
}

void admit_member(const Module& module, const TokenSelector& token, const SecretString& so_pin,
                  std::string_view member, std::span<const std::uint8_t> spki,
                  std::string_view expected_fingerprint) {
  check_member(member);
  const RsaPublicParts parts = parse_rsa_spki(spki);
  if (encode_rsa_spki(parts.modulus, parts.exponent) != std::vector<std::uint8_t>(spki.begin(), spki.end()))
    throw CellKeyError("the public key of member '" + std::string(member) + "' is not in DER canonical form");
  const Slot slot = find_token_slot(module, token);
  Session s(slot, /*read_write=*/true);
  s.login(CKU_SO, so_pin);
  OpCounters counters;
  // The fingerprint the operator compared is over exactly these bytes.
  const std::string fp = fingerprint_of(s, spki);
  if (fp != expected_fingerprint) {
    throw CellKeyError("the public key of member '" + std::string(member) + "' has fingerprint " + fp +
                       ", not the " + std::string(expected_fingerprint) + " that was compared: not admitted");
  }
  AttributeTemplate probe;
  peer_match(probe, member).add_bool(CKA_TRUSTED, true);
  if (find_one(s, counters, probe, "the trusted key of member '" + std::string(member) + "'"))
    throw CellKeyError("member '" + std::string(member) + "' is admitted already");
  AttributeTemplate t;
  peer_match(t, member)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, false)
      .add_bool(CKA_TRUSTED, true)
      .add_bool(CKA_WRAP, true)
      .add_bool(CKA_ENCRYPT, false)
      .add_bool(CKA_VERIFY, false)
      .add_bool(CKA_VERIFY_RECOVER, false)
      .add_bool(CKA_DERIVE, false)
      .add_bool(CKA_MODIFIABLE, false)
      .add_bytes(CKA_MODULUS, parts.modulus)
      .add_bytes(CKA_PUBLIC_EXPONENT, parts.exponent);
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  const CK_RV rv = s.functions()->C_CreateObject(s.handle(), t.data(), t.size(), &h);
  if (rv != CKR_OK)
    throw Pkcs11Error("C_CreateObject", rv, "trusted key of member '" + std::string(member) + "'");
  s.logout();
}

}  // namespace edge::hsm
