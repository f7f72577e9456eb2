// CellKeys: transport and signing key pairs, peer public keys, escrow and verify copies,
// RSA-OAEP wrap/unwrap, signed version records and the acceptance of imported keys.
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset.h>
#include <edge/hsm/module.h>
#include <edge/hsm/object.h>
#include <edge/hsm/session.h>
#include <edge/hsm/slot.h>

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
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
constexpr std::uint8_t kSigningId[4] = {'E', 'C', 'S', '1'};
constexpr std::uint8_t kPeerSignIdMagic[4] = {'E', 'C', 'V', '1'};
constexpr std::uint8_t kRecordMagic[4] = {'E', 'C', 'R', '1'};

constexpr std::size_t kMinPeerBits = 2048;
constexpr std::size_t kMaxPeerBits = 4096;
constexpr std::size_t kMaxSignatureBytes = kMaxPeerBits / 8;
constexpr std::size_t kMaxRecordsPerVersion = 8;  // record objects looked at per version

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

// ---- record codec ----

void put_u16(std::vector<std::uint8_t>& out, std::size_t v) {
  out.push_back(static_cast<std::uint8_t>((v >> 8) & 0xff));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}

void put_be(std::vector<std::uint8_t>& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xff));
}

// A bounded reader: every read checks the remaining length first.
struct Reader {
  std::span<const std::uint8_t> in;
  std::size_t pos = 0;
  bool ok = true;

  std::uint64_t be(std::size_t bytes) {
    if (!ok || in.size() - pos < bytes) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | in[pos + i];
    pos += bytes;
    return v;
  }
  std::span<const std::uint8_t> take(std::size_t n) {
    if (!ok || in.size() - pos < n) {
      ok = false;
      return {};
    }
    std::span<const std::uint8_t> out = in.subspan(pos, n);
    pos += n;
    return out;
  }
};

// ---- objects ----

AttributeTemplate& transport_match(AttributeTemplate& t, CK_OBJECT_CLASS cls) {
  t.add_class(cls)
      .add_key_type(CKK_RSA)
      .add_string(CKA_LABEL, std::string(kTransportKeyLabel))
      .add_bytes(CKA_ID, kTransportId);
  return t;
}

AttributeTemplate& signing_match(AttributeTemplate& t, CK_OBJECT_CLASS cls) {
  t.add_class(cls)
      .add_key_type(CKK_RSA)
      .add_string(CKA_LABEL, std::string(kSigningKeyLabel))
      .add_bytes(CKA_ID, kSigningId);
  return t;
}

std::vector<std::uint8_t> member_id_bytes(const std::uint8_t (&magic)[4], std::string_view member) {
  // Sized once and filled in place (GCC 12 warns falsely on vector::insert growth here).
  std::vector<std::uint8_t> id(4 + member.size());
  std::copy(std::begin(magic), std::end(magic), id.begin());
  std::copy(member.begin(), member.end(), id.begin() + 4);
  return id;
}

std::string peer_label(std::string_view member) {
  return std::string(kPeerKeyLabelPrefix) + std::string(member);
}
std::string peer_sign_label(std::string_view member) {
  return peer_label(member) + std::string(kPeerSignLabelSuffix);
}

AttributeTemplate& peer_match(AttributeTemplate& t, std::string_view member) {
  t.add_class(CKO_PUBLIC_KEY)
      .add_key_type(CKK_RSA)
      .add_string(CKA_LABEL, peer_label(member))
      .add_bytes(CKA_ID, member_id_bytes(kPeerIdMagic, member));
  return t;
}

AttributeTemplate& peer_sign_match(AttributeTemplate& t, std::string_view member) {
  t.add_class(CKO_PUBLIC_KEY)
      .add_key_type(CKK_RSA)
      .add_string(CKA_LABEL, peer_sign_label(member))
      .add_bytes(CKA_ID, member_id_bytes(kPeerSignIdMagic, member));
  return t;
}

std::string escrow_label(std::string_view set, std::uint32_t version) {
  return version_label(set, version) + "/escrow";
}

std::string record_label(std::string_view set, std::uint32_t version) {
  return std::string(kRecordLabelPrefix) + version_label(set, version);
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

AttributeTemplate& record_match(AttributeTemplate& t, std::string_view set, std::uint32_t version) {
  t.add_class(CKO_DATA).add_string(CKA_LABEL, record_label(set, version));
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
CK_RSA_PKCS_PSS_PARAMS pss_params() { return {CKM_SHA256, CKG_MGF1_SHA256, 32}; }

std::vector<std::uint8_t> digest_sha256(Session& s, std::span<const std::uint8_t> data) {
  CK_MECHANISM mech{CKM_SHA256, nullptr, 0};
  CK_RV rv = s.functions()->C_DigestInit(s.handle(), &mech);
  if (rv != CKR_OK) throw Pkcs11Error("C_DigestInit", rv, "identity fingerprint");
  std::vector<std::uint8_t> out(32);
  CK_ULONG len = out.size();
  rv = s.functions()->C_Digest(s.handle(), const_cast<CK_BYTE_PTR>(data.data()),
                               static_cast<CK_ULONG>(data.size()), out.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_Digest", rv, "identity fingerprint");
  out.resize(len);
  return out;
}

std::string fingerprint_of(Session& s, std::span<const std::uint8_t> identity) {
  return "sha256:" + hex(digest_sha256(s, identity));
}

std::vector<std::uint8_t> spki_of(Session& s, CK_OBJECT_HANDLE pub) {
  Object o(s, pub);
  std::optional<std::vector<std::uint8_t>> n = o.get_bytes(CKA_MODULUS);
  std::optional<std::vector<std::uint8_t>> e = o.get_bytes(CKA_PUBLIC_EXPONENT);
  if (!n || !e) throw CellKeyError("an RSA public key without a readable modulus or exponent");
  return encode_rsa_spki(*n, *e);
}

std::vector<std::uint8_t> concat(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  std::vector<std::uint8_t> out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

TransportPublicKey identity_of(Session& s, CK_OBJECT_HANDLE transport_pub, CK_OBJECT_HANDLE signing_pub) {
  TransportPublicKey out;
  out.spki = spki_of(s, transport_pub);
  out.signing_spki = spki_of(s, signing_pub);
  out.fingerprint = fingerprint_of(s, out.identity());
  return out;
}

CK_OBJECT_HANDLE the_transport(Session& s, OpCounters& c, CK_OBJECT_CLASS cls) {
  AttributeTemplate t;
  std::optional<CK_OBJECT_HANDLE> h = find_one(s, c, transport_match(t, cls), "the transport key");
  if (!h) throw CellKeyError("this HSM has no cell transport key (edge-hsm cell init)");
  return *h;
}

CK_OBJECT_HANDLE the_signing(Session& s, OpCounters& c, CK_OBJECT_CLASS cls) {
  AttributeTemplate t;
  std::optional<CK_OBJECT_HANDLE> h = find_one(s, c, signing_match(t, cls), "the signing key");
  if (!h) throw CellKeyError("this HSM has no cell signing key (edge-hsm cell init)");
  return *h;
}

// The full HMAC-SHA256 of kCheckValueInput under `key`.
std::array<std::uint8_t, 32> check_mac_of(Session& s, OpCounters& c, CK_OBJECT_HANDLE key) {
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  CK_RV rv = s.functions()->C_SignInit(s.handle(), &mech, key);
  if (rv != CKR_OK) throw Pkcs11Error("C_SignInit", rv, "key check value");
  std::array<std::uint8_t, 32> mac{};
  CK_ULONG len = mac.size();
  std::vector<std::uint8_t> in = bytes_of(kCheckValueInput);
  c.sign.fetch_add(1, std::memory_order_relaxed);
  rv = s.functions()->C_Sign(s.handle(), in.data(), static_cast<CK_ULONG>(in.size()), mac.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_Sign", rv, "key check value");
  if (len != mac.size()) throw CellKeyError("the key check value is not an HMAC-SHA256");
  return mac;
}

std::string kcv(Session& s, OpCounters& c, CK_OBJECT_HANDLE key) {
  const std::array<std::uint8_t, 32> mac = check_mac_of(s, c, key);
  return hex(std::span<const std::uint8_t>(mac.data(), 8));
}

// C_Verify(CKM_SHA256_HMAC, kCheckValueInput, mac) with `key`: CKR_OK when the key is
// the one `mac` was made with, CKR_SIGNATURE_INVALID when not, another CK_RV when the
// HSM refused (CKR_KEY_FUNCTION_NOT_PERMITTED for a retired key). Allocation-free.
CK_RV verify_check_mac(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                       const std::uint8_t* mac) noexcept {
  static constexpr std::string_view in = kCheckValueInput;
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  CK_RV rv = f->C_VerifyInit(session, &mech, key);
  if (rv != CKR_OK) return rv;
  // C_Verify wants non-const pointers; it reads them only.
  return f->C_Verify(session, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(in.data())),
                     static_cast<CK_ULONG>(in.size()), const_cast<CK_BYTE_PTR>(mac), 32);
}

void destroy_quietly(Session& s, CK_OBJECT_HANDLE h) noexcept {
  if (h != CK_INVALID_HANDLE) s.functions()->C_DestroyObject(s.handle(), h);
}

void destroy_all(Session& s, OpCounters& c, AttributeTemplate& t) {
  c.find.fetch_add(1, std::memory_order_relaxed);
  for (CK_OBJECT_HANDLE h : find_objects(s, t)) {
    const CK_RV rv = s.functions()->C_DestroyObject(s.handle(), h);
    if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) throw Pkcs11Error("C_DestroyObject", rv);
  }
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

// The SO-imported (CKA_TRUSTED) verify key of a member, or nothing. A same-labelled
// object a user made has CKA_TRUSTED false and is not found.
std::optional<CK_OBJECT_HANDLE> find_trusted_verify(Session& s, OpCounters& c, std::string_view member) {
  AttributeTemplate t;
  peer_sign_match(t, member).add_bool(CKA_TRUSTED, true).add_bool(CKA_VERIFY, true);
  return find_one(s, c, t, "the trusted verify key of member '" + std::string(member) + "'");
}

CK_OBJECT_HANDLE trusted_verify(Session& s, OpCounters& c, std::string_view member) {
  std::optional<CK_OBJECT_HANDLE> h = find_trusted_verify(s, c, member);
  if (!h) {
    throw CellKeyError("member '" + std::string(member) +
                       "' has no trusted verify key in this HSM (the SO admits it: edge-hsm cell trust)");
  }
  return *h;
}

// C_Verify of an RSA-PSS signature: true / false (invalid), Pkcs11Error otherwise. Not
// counted: OpCounters::verify counts flow-token MAC verifies.
bool pss_verify(Session& s, CK_OBJECT_HANDLE key, std::span<const std::uint8_t> data,
                std::span<const std::uint8_t> sig) {
  if (sig.empty() || sig.size() > kMaxSignatureBytes) return false;
  CK_RSA_PKCS_PSS_PARAMS p = pss_params();
  CK_MECHANISM mech{CKM_SHA256_RSA_PKCS_PSS, &p, sizeof p};
  CK_RV rv = s.functions()->C_VerifyInit(s.handle(), &mech, key);
  if (rv != CKR_OK) throw Pkcs11Error("C_VerifyInit", rv, "RSA-PSS signature");
  static std::uint8_t empty = 0;
  rv = s.functions()->C_Verify(s.handle(), data.empty() ? &empty : const_cast<CK_BYTE_PTR>(data.data()),
                               static_cast<CK_ULONG>(data.size()), const_cast<CK_BYTE_PTR>(sig.data()),
                               static_cast<CK_ULONG>(sig.size()));
  if (rv == CKR_OK) return true;
  if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE) return false;
  throw Pkcs11Error("C_Verify", rv, "RSA-PSS signature");
}

std::vector<std::uint8_t> pss_sign(Session& s, CK_OBJECT_HANDLE key, std::span<const std::uint8_t> data) {
  CK_RSA_PKCS_PSS_PARAMS p = pss_params();
  CK_MECHANISM mech{CKM_SHA256_RSA_PKCS_PSS, &p, sizeof p};
  CK_RV rv = s.functions()->C_SignInit(s.handle(), &mech, key);
  if (rv != CKR_OK) throw Pkcs11Error("C_SignInit", rv, "RSA-PSS signature");
  std::vector<std::uint8_t> out(kMaxSignatureBytes);
  CK_ULONG len = out.size();
  static std::uint8_t empty = 0;
  rv = s.functions()->C_Sign(s.handle(), data.empty() ? &empty : const_cast<CK_BYTE_PTR>(data.data()),
                             static_cast<CK_ULONG>(data.size()), out.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_Sign", rv, "RSA-PSS signature");
  out.resize(len);
  return out;
}

void check_member(std::string_view member) {
  if (!valid_member_id(member))
    throw CellKeyError("'" + std::string(member) + "' is not a member id (1-64 of A-Z a-z 0-9 . _ -)");
}

void check_set(std::string_view set, std::uint32_t version) {
  if (!valid_key_set_name(set)) throw CellKeyError("'" + std::string(set) + "' is not a key set name");
  if (version == 0) throw CellKeyError("key-set versions start at 1");
}

// The verify and escrow copies a blob unwraps into; destroyed again unless kept.
struct Copies {
  Session& s;
  CK_OBJECT_HANDLE verify = CK_INVALID_HANDLE, escrow = CK_INVALID_HANDLE;
  bool keep = false;
  explicit Copies(Session& session) : s(session) {}
  Copies(const Copies&) = delete;
  Copies& operator=(const Copies&) = delete;
  ~Copies() {
    if (keep) return;
    destroy_quietly(s, escrow);
    destroy_quietly(s, verify);
  }
};

void unwrap_both(Copies& out, OpCounters& c, CK_OBJECT_HANDLE priv, std::span<const std::uint8_t> wrapped,
                 const KeyId& id) {
  AttributeTemplate vt = verify_template(id);
  out.verify = unwrap(out.s, c, priv, wrapped, vt, "verify copy");
  AttributeTemplate et = escrow_template(&id);
  out.escrow = unwrap(out.s, c, priv, wrapped, et, "escrow copy");
}

// Whether any copy or record of (set, version) is in the token.
bool version_present(Session& s, OpCounters& c, std::string_view set, std::uint32_t version) {
  AttributeTemplate v, e;
  c.find.fetch_add(2, std::memory_order_relaxed);
  return !find_objects(s, version_match(v, set, version), 1).empty() ||
         !find_objects(s, escrow_match(e, set, version), 1).empty();
}

CK_OBJECT_HANDLE store_record(Session& s, OpCounters& c, const VersionRecord& r) {
  // Records a user left behind for this version (public data anyone with the PIN can
  // write) go first: the version's own record is the one stored now.
  AttributeTemplate stale;
  destroy_all(s, c, record_match(stale, r.set, r.version));
  const std::vector<std::uint8_t> value = encode_record(r);
  AttributeTemplate t;
  t.add_class(CKO_DATA)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, false)
      .add_string(CKA_LABEL, record_label(r.set, r.version))
      .add_string(CKA_APPLICATION, "edge cell")
      .add_bytes(CKA_VALUE, value)
      .add_bool(CKA_MODIFIABLE, false);
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  const CK_RV rv = s.functions()->C_CreateObject(s.handle(), t.data(), t.size(), &h);
  if (rv != CKR_OK) throw Pkcs11Error("C_CreateObject", rv, "version record");
  return h;
}

// CKA_VALUE of a record (a CKO_DATA object: public data, never a key; Object::get_bytes
// refuses CKA_VALUE on principle). nullopt when unreadable or larger than a record can be.
std::optional<std::vector<std::uint8_t>> record_value(Session& s, CK_OBJECT_HANDLE h) {
  CK_OBJECT_CLASS cls = 0;
  CK_ATTRIBUTE c{CKA_CLASS, &cls, sizeof cls};
  if (s.functions()->C_GetAttributeValue(s.handle(), h, &c, 1) != CKR_OK || cls != CKO_DATA)
    return std::nullopt;
  CK_ATTRIBUTE a{CKA_VALUE, nullptr, 0};
  if (s.functions()->C_GetAttributeValue(s.handle(), h, &a, 1) != CKR_OK ||
      a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 4096)
    return std::nullopt;
  std::vector<std::uint8_t> out(a.ulValueLen);
  a.pValue = out.data();
  if (s.functions()->C_GetAttributeValue(s.handle(), h, &a, 1) != CKR_OK) return std::nullopt;
  out.resize(a.ulValueLen);
  return out;
}

bool record_matches(const VersionRecord& r, const KeyId& id) {
  return r.set == id.set && r.version == id.version && r.created == id.created && r.retain == id.retain;
}

std::string printable(std::string_view s) {
  std::string out;
  for (char ch : s) out += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
  return out;
}

std::vector<std::uint8_t> cache_key(CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE vk,
                                    std::span<const std::uint8_t> rec) {
  std::vector<std::uint8_t> k;
  put_be(k, static_cast<std::uint64_t>(key), 8);
  put_be(k, static_cast<std::uint64_t>(vk), 8);
  k.insert(k.end(), rec.begin(), rec.end());
  return k;
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

// ---- identity ----

std::vector<std::uint8_t> TransportPublicKey::identity() const { return concat(spki, signing_spki); }

IdentityParts split_identity(std::span<const std::uint8_t> identity) {
  // The first SPKI ends where its outer SEQUENCE ends (DER is self-delimiting).
  std::size_t pos = 0;
  read_tlv(identity, pos, 0x30);
  IdentityParts out;
  out.transport_spki.assign(identity.begin(), identity.begin() + static_cast<std::ptrdiff_t>(pos));
  out.signing_spki.assign(identity.begin() + static_cast<std::ptrdiff_t>(pos), identity.end());
  if (out.signing_spki.empty())
    throw CellKeyError("malformed identity: no signing public key after the transport key");
  for (const auto* part : {&out.transport_spki, &out.signing_spki}) {
    const RsaPublicParts p = parse_rsa_spki(*part);
    if (encode_rsa_spki(p.modulus, p.exponent) != *part)
      throw CellKeyError("malformed identity: a public key is not in DER canonical form");
  }
  return out;
}

std::string identity_fingerprint(std::span<const std::uint8_t> identity) {
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(identity.data(), identity.size(), md.data(), &len, EVP_sha256(), nullptr) != 1 || len != 32)
    throw HsmError("SHA-256 of the identity failed (OpenSSL)");
  return "sha256:" + hex(std::span<const std::uint8_t>(md.data(), len));
}

// ---- records ----

std::string VersionRecord::check_value() const {
  return hex(std::span<const std::uint8_t>(check_mac.data(), 8));
}

// Body, big-endian: "ECR1" | u16 len | set | u32 version | i64 created | u32 retain |
// check_mac[32] | u16 len | origin. Record: body | u16 len | signature.
std::vector<std::uint8_t> encode_record_body(const VersionRecord& r) {
  if (r.set.size() > 0xffff || r.origin.size() > 0xffff) throw CellKeyError("a record field is too long");
  std::vector<std::uint8_t> out(std::begin(kRecordMagic), std::end(kRecordMagic));
  put_u16(out, r.set.size());
  out.insert(out.end(), r.set.begin(), r.set.end());
  put_be(out, r.version, 4);
  put_be(out, static_cast<std::uint64_t>(r.created), 8);
  put_be(out, r.retain, 4);
  out.insert(out.end(), r.check_mac.begin(), r.check_mac.end());
  put_u16(out, r.origin.size());
  out.insert(out.end(), r.origin.begin(), r.origin.end());
  return out;
}

std::vector<std::uint8_t> record_signed_bytes(const VersionRecord& r) {
  std::vector<std::uint8_t> out(kRecordSignatureContext.begin(), kRecordSignatureContext.end());
  const std::vector<std::uint8_t> body = encode_record_body(r);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<std::uint8_t> encode_record(const VersionRecord& r) {
  if (r.signature.size() > 0xffff) throw CellKeyError("a record signature is too long");
  std::vector<std::uint8_t> out = encode_record_body(r);
  put_u16(out, r.signature.size());
  out.insert(out.end(), r.signature.begin(), r.signature.end());
  return out;
}

std::optional<VersionRecord> decode_record(std::span<const std::uint8_t> in) {
  Reader rd{in};
  const std::span<const std::uint8_t> magic = rd.take(4);
  if (!rd.ok || !std::equal(magic.begin(), magic.end(), std::begin(kRecordMagic))) return std::nullopt;
  VersionRecord r;
  const std::span<const std::uint8_t> set = rd.take(static_cast<std::size_t>(rd.be(2)));
  r.set.assign(set.begin(), set.end());
  r.version = static_cast<std::uint32_t>(rd.be(4));
  r.created = static_cast<std::int64_t>(rd.be(8));
  r.retain = static_cast<std::uint32_t>(rd.be(4));
  const std::span<const std::uint8_t> mac = rd.take(32);
  if (rd.ok) std::copy(mac.begin(), mac.end(), r.check_mac.begin());
  const std::span<const std::uint8_t> origin = rd.take(static_cast<std::size_t>(rd.be(2)));
  r.origin.assign(origin.begin(), origin.end());
  const std::span<const std::uint8_t> sig = rd.take(static_cast<std::size_t>(rd.be(2)));
  r.signature.assign(sig.begin(), sig.end());
  if (!rd.ok || rd.pos != in.size()) return std::nullopt;
  if (!valid_key_set_name(r.set) || r.version == 0 || !valid_member_id(r.origin)) return std::nullopt;
  if (r.signature.empty() || r.signature.size() > kMaxSignatureBytes) return std::nullopt;
  return r;
}

// ---- acceptance of imported keys (keyset_store.h) ----

std::optional<std::string> accept_imported(Session& s, Hsm::Impl& im, CK_OBJECT_HANDLE key, const KeyId& id,
                                           bool retired, std::array<std::uint8_t, 32>& check_mac,
                                           std::string& refusal) {
  OpCounters& c = im.counters;
  AttributeTemplate t;
  c.find.fetch_add(1, std::memory_order_relaxed);
  const std::vector<CK_OBJECT_HANDLE> records =
      find_objects(s, record_match(t, id.set, id.version), kMaxRecordsPerVersion);
  if (records.empty()) {
    refusal = "CKA_LOCAL is false (unwrapped or created) and there is no cell version record " +
              record_label(id.set, id.version) + " for it";
    return std::nullopt;
  }
  refusal.clear();
  for (CK_OBJECT_HANDLE rh : records) {
    std::optional<std::vector<std::uint8_t>> value = record_value(s, rh);
    if (!value) continue;
    std::optional<VersionRecord> r = decode_record(*value);
    if (!r || !record_matches(*r, id)) {
      if (refusal.empty())
        refusal = "its cell version record is malformed or does not match the key's CKA_ID";
      continue;
    }
    const std::optional<CK_OBJECT_HANDLE> vk = find_trusted_verify(s, c, r->origin);
    if (!vk) {
      refusal = "its cell version record names origin '" + printable(r->origin) +
                "', which has no trusted verify key in this HSM";
      continue;
    }
    const std::vector<std::uint8_t> ck = cache_key(key, *vk, *value);
    const std::uint64_t epoch = im.handle_epoch.load(std::memory_order_acquire);
    {
      std::lock_guard lock(im.cell_accept.mu);
      if (im.cell_accept.epoch == epoch &&
          std::find(im.cell_accept.accepted.begin(), im.cell_accept.accepted.end(), ck) !=
              im.cell_accept.accepted.end()) {
        check_mac = r->check_mac;
        return r->origin;
      }
    }
    if (!pss_verify(s, *vk, record_signed_bytes(*r), r->signature)) {
      refusal = "the signature of its cell version record does not verify under the trusted key of '" +
                r->origin + "'";
      continue;
    }
    if (!retired) {
      const CK_RV rv = verify_check_mac(s.functions(), s.handle(), key, r->check_mac.data());
      if (rv == CKR_SIGNATURE_INVALID) {
        refusal =
            "its HMAC over the check string is not the one in the signed version record (a key created "
            "with another value)";
        continue;
      }
      // Retired between reading the flags and now: listed as retired, never used.
      if (rv != CKR_OK && rv != CKR_KEY_FUNCTION_NOT_PERMITTED)
        throw Pkcs11Error("C_Verify", rv, "check value");
      if (rv == CKR_OK) {
        std::lock_guard lock(im.cell_accept.mu);
        if (im.cell_accept.epoch != epoch) {
          im.cell_accept.epoch = epoch;
          im.cell_accept.accepted.clear();
        }
        if (im.cell_accept.accepted.size() >= 256) im.cell_accept.accepted.clear();
        im.cell_accept.accepted.push_back(ck);
      }
    }
    check_mac = r->check_mac;
    return r->origin;
  }
  return std::nullopt;
}

CK_RV verify_imported_mac(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key,
                          const std::uint8_t* check_mac) noexcept {
  return verify_check_mac(f, session, key, check_mac);
}

// ---- CellKeys ----

bool CellKeys::has_transport_key() {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate t;
    return find_one(s, im.counters, transport_match(t, CKO_PRIVATE_KEY), "the transport key").has_value();
  });
}

namespace {

std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE> generate_pair(Session& s, OpCounters& c, AttributeTemplate& pub,
                                                            AttributeTemplate& priv, const char* what) {
  CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
  c.generate.fetch_add(1, std::memory_order_relaxed);
  const CK_RV rv = s.functions()->C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(), priv.data(),
                                                    priv.size(), &hpub, &hpriv);
  if (rv != CKR_OK) throw Pkcs11Error("C_GenerateKeyPair", rv, what);
  return {hpub, hpriv};
}

}  // namespace

TransportPublicKey CellKeys::create_transport_key() {
  Hsm::Impl& im = hsm_.impl();
  if (has_transport_key()) throw CellKeyError("this HSM has a cell transport key already");
  return im.with_session([&](Session& s) {
    AttributeTemplate probe;
    if (find_one(s, im.counters, signing_match(probe, CKO_PRIVATE_KEY), "the signing key"))
      throw CellKeyError("this HSM has a cell signing key already (but no transport key)");
    const std::uint8_t e65537[] = {0x01, 0x00, 0x01};
    AttributeTemplate pub;
    pub.add_class(CKO_PUBLIC_KEY)
        .add_key_type(CKK_RSA)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, false)
        .add_bool(CKA_WRAP, true)
        .add_bool(CKA_ENCRYPT, false)
        .add_bool(CKA_VERIFY, false)
        .add_bool(CKA_VERIFY_RECOVER, false)
        .add_bool(CKA_DERIVE, false)
        .add_bool(CKA_MODIFIABLE, false)
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
    // The signing pair: signs version records, approvals and acks, nothing else.
    AttributeTemplate spub;
    spub.add_class(CKO_PUBLIC_KEY)
        .add_key_type(CKK_RSA)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, false)
        .add_bool(CKA_VERIFY, true)
        .add_bool(CKA_WRAP, false)
        .add_bool(CKA_ENCRYPT, false)
        .add_bool(CKA_VERIFY_RECOVER, false)
        .add_bool(CKA_DERIVE, false)
        .add_bool(CKA_MODIFIABLE, false)
        .add_ulong(CKA_MODULUS_BITS, kTransportKeyBits)
        .add_bytes(CKA_PUBLIC_EXPONENT, e65537)
        .add_string(CKA_LABEL, std::string(kSigningKeyLabel))
        .add_bytes(CKA_ID, kSigningId);
    AttributeTemplate spriv;
    spriv.add_class(CKO_PRIVATE_KEY)
        .add_key_type(CKK_RSA)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, true)
        .add_bool(CKA_SENSITIVE, true)
        .add_bool(CKA_EXTRACTABLE, false)
        .add_bool(CKA_SIGN, true)
        .add_bool(CKA_SIGN_RECOVER, false)
        .add_bool(CKA_DECRYPT, false)
        .add_bool(CKA_UNWRAP, false)
        .add_bool(CKA_DERIVE, false)
        .add_bool(CKA_MODIFIABLE, false)
        .add_bool(CKA_COPYABLE, false)
        .add_string(CKA_LABEL, std::string(kSigningKeyLabel))
        .add_bytes(CKA_ID, kSigningId);
    const auto [tpub, tpriv] = generate_pair(s, im.counters, pub, priv, "cell transport key");
    try {
      const auto [sgpub, sgpriv] = generate_pair(s, im.counters, spub, spriv, "cell signing key");
      return identity_of(s, tpub, sgpub);
    } catch (...) {
      destroy_quietly(s, tpriv);
      destroy_quietly(s, tpub);
      throw;
    }
  });
}

TransportPublicKey CellKeys::transport_public_key() {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    return identity_of(s, the_transport(s, im.counters, CKO_PUBLIC_KEY),
                       the_signing(s, im.counters, CKO_PUBLIC_KEY));
  });
}

std::vector<PeerKey> CellKeys::peers() {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    AttributeTemplate t;
    t.add_class(CKO_PUBLIC_KEY).add_key_type(CKK_RSA);
    im.counters.find.fetch_add(1, std::memory_order_relaxed);
    // Per member: its wrap and verify key objects, the trusted one first.
    struct Found {
      CK_OBJECT_HANDLE wrap = CK_INVALID_HANDLE, verify = CK_INVALID_HANDLE;
      bool wrap_trusted = false, verify_trusted = false;
    };
    std::vector<std::pair<std::string, Found>> members;
    const auto slot = [&](const std::string& m) -> Found& {
      for (auto& [name, f] : members)
        if (name == m) return f;
      members.emplace_back(m, Found{});
      return members.back().second;
    };
    for (CK_OBJECT_HANDLE h : find_objects(s, t)) {
      Object o(s, h);
      std::optional<std::vector<std::uint8_t>> id = o.get_bytes(CKA_ID);
      std::optional<std::vector<std::uint8_t>> label = o.get_bytes(CKA_LABEL);
      if (!id || id->size() <= 4 || !label) continue;
      const bool is_wrap = std::equal(kPeerIdMagic, kPeerIdMagic + 4, id->begin());
      const bool is_verify = std::equal(kPeerSignIdMagic, kPeerSignIdMagic + 4, id->begin());
      if (!is_wrap && !is_verify) continue;
      const std::string member(id->begin() + 4, id->end());
      const std::string want = is_wrap ? peer_label(member) : peer_sign_label(member);
      if (!valid_member_id(member) || std::string(label->begin(), label->end()) != want) continue;
      const bool trusted = o.get_bool(CKA_TRUSTED).value_or(false);
      Found& f = slot(member);
      CK_OBJECT_HANDLE& which = is_wrap ? f.wrap : f.verify;
      bool& which_trusted = is_wrap ? f.wrap_trusted : f.verify_trusted;
      if (which == CK_INVALID_HANDLE || (trusted && !which_trusted)) {
        which = h;
        which_trusted = trusted;
      }
    }
    std::vector<PeerKey> out;
    for (const auto& [member, f] : members) {
      PeerKey p;
      p.member = member;
      p.trusted = f.wrap_trusted && f.verify_trusted;
      // The fingerprint of the identity the two objects make; "" when one is missing.
      if (f.wrap != CK_INVALID_HANDLE && f.verify != CK_INVALID_HANDLE)
        p.fingerprint = fingerprint_of(s, concat(spki_of(s, f.wrap), spki_of(s, f.verify)));
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
    AttributeTemplate w, v;
    im.counters.find.fetch_add(2, std::memory_order_relaxed);
    std::vector<CK_OBJECT_HANDLE> found = find_objects(s, peer_match(w, member));
    for (CK_OBJECT_HANDLE h : find_objects(s, peer_sign_match(v, member))) found.push_back(h);
    for (CK_OBJECT_HANDLE h : found) {
      const CK_RV rv = s.functions()->C_DestroyObject(s.handle(), h);
      if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
        throw Pkcs11Error("C_DestroyObject", rv, "peer key");
    }
    return !found.empty();
  });
}

std::vector<std::uint8_t> CellKeys::sign(std::span<const std::uint8_t> data) {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session(
      [&](Session& s) { return pss_sign(s, the_signing(s, im.counters, CKO_PRIVATE_KEY), data); });
}

bool CellKeys::verify(std::string_view member, std::span<const std::uint8_t> data,
                      std::span<const std::uint8_t> sig) {
  check_member(member);
  Hsm::Impl& im = hsm_.impl();
  return im.with_session(
      [&](Session& s) { return pss_verify(s, trusted_verify(s, im.counters, member), data, sig); });
}

VersionRecord CellKeys::generate_version(std::string_view self, std::string_view set, std::uint32_t version,
                                         std::int64_t created, std::uint32_t retain) {
  check_member(self);
  check_set(set, version);
  if (retain < 1 || retain > kMaxRetain)
    throw CellKeyError("retain must be 1.." + std::to_string(kMaxRetain));
  const KeyId id{version, created, retain, std::string(set)};
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) {
    if (version_present(s, im.counters, set, version))
      throw CellKeyError("version " + std::to_string(version) + " of '" + std::string(set) +
                         "' exists already");
    const CK_OBJECT_HANDLE priv = the_transport(s, im.counters, CKO_PRIVATE_KEY);
    const CK_OBJECT_HANDLE signer = the_signing(s, im.counters, CKO_PRIVATE_KEY);
    const CK_OBJECT_HANDLE pub = trusted_peer(s, im.counters, self);
    const CK_OBJECT_HANDLE own_verify = trusted_verify(s, im.counters, self);
    // A generated key that is extractable under trusted keys only, wrapped to
    // ourselves and unwrapped as the two copies every member holds; the
    // generated one is destroyed again.
    AttributeTemplate g = escrow_template(nullptr);
    g.add_ulong(kKeyLengthAttribute, kKeyBytes);
    im.counters.generate.fetch_add(1, std::memory_order_relaxed);
    const CK_OBJECT_HANDLE fresh = generate_key(s, CKM_GENERIC_SECRET_KEY_GEN, g);
    Copies copies(s);
    try {
      const std::vector<std::uint8_t> blob = wrap(s, pub, fresh, "this member's own transport key");
      unwrap_both(copies, im.counters, priv, blob, id);
      destroy_quietly(s, fresh);
    } catch (...) {
      destroy_quietly(s, fresh);
      throw;
    }
    VersionRecord r;
    r.set = std::string(set);
    r.version = version;
    r.created = created;
    r.retain = retain;
    r.check_mac = check_mac_of(s, im.counters, copies.verify);
    r.origin = std::string(self);
    r.signature = pss_sign(s, signer, record_signed_bytes(r));
    // The record must verify here as on every other member: under the key the SO
    // admitted as this member's.
    if (!pss_verify(s, own_verify, record_signed_bytes(r), r.signature)) {
      throw CellKeyError("this HSM's signing key is not the one its SO admitted as member '" +
                         std::string(self) + "': nothing kept");
    }
    const CK_OBJECT_HANDLE rec = store_record(s, im.counters, r);
    (void)rec;
    copies.keep = true;
    return r;
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

void CellKeys::import_version(const VersionRecord& record, std::span<const std::uint8_t> wrapped) {
  const VersionRecord& r = record;
  check_set(r.set, r.version);
  check_member(r.origin);
  if (r.retain < 1 || r.retain > kMaxRetain)
    throw CellKeyError("the record's retain " + std::to_string(r.retain) + " is not 1.." +
                       std::to_string(kMaxRetain));
  if (r.created <= 0) throw CellKeyError("the record's creation time is not a unix time");
  if (r.signature.empty() || r.signature.size() > kMaxSignatureBytes)
    throw CellKeyError("the record has no valid signature");
  if (wrapped.empty() || wrapped.size() > kMaxSignatureBytes)
    throw CellKeyError("the blob is not an RSA-OAEP blob");
  const KeyId id{r.version, r.created, r.retain, r.set};
  const std::string what = "version " + std::to_string(r.version) + " of '" + r.set + "'";
  Hsm::Impl& im = hsm_.impl();
  im.with_session([&](Session& s) {
    if (version_present(s, im.counters, r.set, r.version)) throw CellKeyError(what + " exists already");
    const CK_OBJECT_HANDLE vk = trusted_verify(s, im.counters, r.origin);
    if (!pss_verify(s, vk, record_signed_bytes(r), r.signature)) {
      throw CellKeyError("the record of " + what + " is not signed by member '" + r.origin +
                         "' (the signature does not verify under its trusted key): refused, nothing kept");
    }
    const CK_OBJECT_HANDLE priv = the_transport(s, im.counters, CKO_PRIVATE_KEY);
    Copies copies(s);
    unwrap_both(copies, im.counters, priv, wrapped, id);
    const CK_RV rv = verify_check_mac(s.functions(), s.handle(), copies.verify, r.check_mac.data());
    if (rv == CKR_SIGNATURE_INVALID) {
      throw CellKeyError("the unwrapped key of " + what +
                         " is not the key of the signed record (check value " + r.check_value() +
                         "): refused, nothing kept");
    }
    if (rv != CKR_OK) throw Pkcs11Error("C_Verify", rv, "check value of the unwrapped key");
    store_record(s, im.counters, r);
    copies.keep = true;
  });
}

std::optional<VersionRecord> CellKeys::record(std::string_view set, std::uint32_t version) {
  check_set(set, version);
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) -> std::optional<VersionRecord> {
    AttributeTemplate t;
    im.counters.find.fetch_add(1, std::memory_order_relaxed);
    // The one whose signature verifies: anyone with the PIN can add data objects.
    for (CK_OBJECT_HANDLE h : find_objects(s, record_match(t, set, version), kMaxRecordsPerVersion)) {
      std::optional<std::vector<std::uint8_t>> value = record_value(s, h);
      if (!value) continue;
      std::optional<VersionRecord> r = decode_record(*value);
      if (!r || r->set != set || r->version != version) continue;
      const std::optional<CK_OBJECT_HANDLE> vk = find_trusted_verify(s, im.counters, r->origin);
      if (vk && pss_verify(s, *vk, record_signed_bytes(*r), r->signature)) return r;
    }
    return std::nullopt;
  });
}

void CellKeys::destroy_version(std::string_view set, std::uint32_t version) {
  check_set(set, version);
  Hsm::Impl& im = hsm_.impl();
  im.with_session([&](Session& s) {
    AttributeTemplate v, e, r;
    destroy_all(s, im.counters, version_match(v, set, version));
    destroy_all(s, im.counters, escrow_match(e, set, version));
    destroy_all(s, im.counters, record_match(r, set, version));
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
                  std::string_view member, std::span<const std::uint8_t> identity,
                  std::string_view expected_fingerprint) {
  check_member(member);
  const IdentityParts parts = split_identity(identity);
  const RsaPublicParts wrap_key = parse_rsa_spki(parts.transport_spki);
  const RsaPublicParts verify_key = parse_rsa_spki(parts.signing_spki);
  if (wrap_key.modulus == verify_key.modulus)
    throw CellKeyError("the identity of member '" + std::string(member) +
                       "' uses one key for both transport and signing: not admitted");
  const Slot slot = find_token_slot(module, token);
  Session s(slot, /*read_write=*/true);
  s.login(CKU_SO, so_pin);
  OpCounters counters;
  // The fingerprint the operator compared is over exactly these bytes.
  const std::string fp = fingerprint_of(s, identity);
  if (fp != expected_fingerprint) {
    throw CellKeyError("the identity of member '" + std::string(member) + "' has fingerprint " + fp +
                       ", not the " + std::string(expected_fingerprint) + " that was compared: not admitted");
  }
  AttributeTemplate probe_w, probe_v;
  peer_match(probe_w, member).add_bool(CKA_TRUSTED, true);
  peer_sign_match(probe_v, member).add_bool(CKA_TRUSTED, true);
  if (find_one(s, counters, probe_w, "the trusted key of member '" + std::string(member) + "'") ||
      find_one(s, counters, probe_v, "the trusted verify key of member '" + std::string(member) + "'"))
    throw CellKeyError("member '" + std::string(member) + "' is admitted already");
  AttributeTemplate w;
  peer_match(w, member)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, false)
      .add_bool(CKA_TRUSTED, true)
      .add_bool(CKA_WRAP, true)
      .add_bool(CKA_ENCRYPT, false)
      .add_bool(CKA_VERIFY, false)
      .add_bool(CKA_VERIFY_RECOVER, false)
      .add_bool(CKA_DERIVE, false)
      .add_bool(CKA_MODIFIABLE, false)
      .add_bytes(CKA_MODULUS, wrap_key.modulus)
      .add_bytes(CKA_PUBLIC_EXPONENT, wrap_key.exponent);
  AttributeTemplate v;
  peer_sign_match(v, member)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, false)
      .add_bool(CKA_TRUSTED, true)
      .add_bool(CKA_VERIFY, true)
      .add_bool(CKA_WRAP, false)
      .add_bool(CKA_ENCRYPT, false)
      .add_bool(CKA_VERIFY_RECOVER, false)
      .add_bool(CKA_DERIVE, false)
      .add_bool(CKA_MODIFIABLE, false)
      .add_bytes(CKA_MODULUS, verify_key.modulus)
      .add_bytes(CKA_PUBLIC_EXPONENT, verify_key.exponent);
  CK_OBJECT_HANDLE hw = CK_INVALID_HANDLE, hv = CK_INVALID_HANDLE;
  CK_RV rv = s.functions()->C_CreateObject(s.handle(), w.data(), w.size(), &hw);
  if (rv != CKR_OK)
    throw Pkcs11Error("C_CreateObject", rv, "trusted key of member '" + std::string(member) + "'");
  rv = s.functions()->C_CreateObject(s.handle(), v.data(), v.size(), &hv);
  if (rv != CKR_OK) {
    destroy_quietly(s, hw);  // both or neither
    throw Pkcs11Error("C_CreateObject", rv, "trusted verify key of member '" + std::string(member) + "'");
  }
  s.logout();
}

}  // namespace edge::hsm
