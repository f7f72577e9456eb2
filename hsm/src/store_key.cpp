// StoreKey: the config store's HMAC key, generated in the token, adopted only with provenance.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/object.h>
#include <edge/hsm/session.h>
#include <edge/hsm/store_key.h>

#include <string>
#include <vector>

#include "hsm_impl.h"
#include "keyset_store.h"

namespace edge::hsm {
namespace {

constexpr std::uint8_t kId[4] = {'E', 'C', 'S', '1'};

AttributeTemplate& match(AttributeTemplate& t) {
  t.add_class(CKO_SECRET_KEY)
      .add_key_type(CKK_GENERIC_SECRET)
      .add_string(CKA_LABEL, std::string(kStoreKeyLabel))
      .add_bytes(CKA_ID, kId);
  return t;
}

struct Found {
  std::vector<CK_OBJECT_HANDLE> genuine;
  std::size_t refused = 0;
  const char* why = nullptr;  // the first refusal
};

// Every object with the store key's label and ID, split by provenance.
Found find(Session& s, OpCounters& counters) {
  AttributeTemplate t;
  counters.find.fetch_add(1, std::memory_order_relaxed);
  Found out;
  for (CK_OBJECT_HANDLE h : find_objects(s, match(t))) {
    const char* refusal = nullptr;
    if (CK_RV rv = check_provenance(s.functions(), s.handle(), h, refusal); rv != CKR_OK)
      throw Pkcs11Error("C_GetAttributeValue", rv, "config store key");
    if (refusal == nullptr) {
      out.genuine.push_back(h);
    } else {
      ++out.refused;
      if (out.why == nullptr) out.why = refusal;
    }
  }
  return out;
}

// The one genuine key, or StoreKeyRefused saying why there is none to use.
CK_OBJECT_HANDLE the_key(Session& s, OpCounters& counters) {
  const Found f = find(s, counters);
  if (f.genuine.size() == 1) return f.genuine.front();
  if (f.genuine.size() > 1) throw StoreKeyRefused("the config store key exists more than once in the token");
  if (f.refused > 0) {
    throw StoreKeyRefused("the object labelled '" + std::string(kStoreKeyLabel) +
                          "' is not a key this HSM generated and is refused: " + f.why);
  }
  throw StoreKeyRefused("the token holds no config store key ('" + std::string(kStoreKeyLabel) + "')");
}

MacTag sign(Session& s, OpCounters& counters, std::span<const std::uint8_t> data) {
  const CK_OBJECT_HANDLE h = the_key(s, counters);
  CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
  CK_RV rv = s.functions()->C_SignInit(s.handle(), &mech, h);
  if (rv != CKR_OK) throw Pkcs11Error("C_SignInit", rv, "config store key");
  static std::uint8_t empty_input = 0;
  CK_BYTE_PTR in = data.empty() ? &empty_input : const_cast<CK_BYTE_PTR>(data.data());
  MacTag tag{};
  CK_ULONG len = tag.size();
  counters.sign.fetch_add(1, std::memory_order_relaxed);
  rv = s.functions()->C_Sign(s.handle(), in, static_cast<CK_ULONG>(data.size()), tag.data(), &len);
  if (rv != CKR_OK) throw Pkcs11Error("C_Sign", rv, "config store key");
  if (len != tag.size())
    throw StoreKeyRefused("the config store key's C_Sign returned " + std::to_string(len) + " bytes");
  return tag;
}

}  // namespace

bool StoreKey::exists() {
  Hsm::Impl& im = hsm_.impl();
  const Found f = im.with_session([&](Session& s) { return find(s, im.counters); });
  if (f.genuine.size() > 1) throw StoreKeyRefused("the config store key exists more than once in the token");
  if (f.genuine.empty() && f.refused > 0) {
    throw StoreKeyRefused("the object labelled '" + std::string(kStoreKeyLabel) +
                          "' is not a key this HSM generated and is refused: " + f.why);
  }
  return f.genuine.size() == 1;
}

void StoreKey::create() {
  Hsm::Impl& im = hsm_.impl();
  if (exists()) throw StoreKeyRefused("the config store key exists already");
  im.with_session([&](Session& s) {
    AttributeTemplate t = mac_key_template(true, /*modifiable=*/false);
    t.add_string(CKA_LABEL, std::string(kStoreKeyLabel)).add_bytes(CKA_ID, kId);
    im.counters.generate.fetch_add(1, std::memory_order_relaxed);
    generate_key(s, CKM_GENERIC_SECRET_KEY_GEN, t);
  });
  // Two processes creating it at once leave two: the seal would depend on
  // which one a lookup finds. Both remove theirs (found again in this
  // session) and report it; the next start creates one.
  im.with_session([&](Session& s) {
    const Found f = find(s, im.counters);
    if (f.genuine.size() <= 1) return;
    for (CK_OBJECT_HANDLE h : f.genuine) {
      CK_RV rv = s.functions()->C_DestroyObject(s.handle(), h);
      if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID) throw Pkcs11Error("C_DestroyObject", rv);
    }
    throw StoreKeyRefused("the config store key was created concurrently by someone else; both were removed");
  });
}

MacTag StoreKey::mac(std::span<const std::uint8_t> data) {
  Hsm::Impl& im = hsm_.impl();
  return im.with_session([&](Session& s) { return sign(s, im.counters, data); });
}

bool StoreKey::verify(std::span<const std::uint8_t> data, std::span<const std::uint8_t> tag) {
  if (tag.size() != kMacSize) return false;
  const MacTag expected = mac(data);
  return constant_time_equal(expected, tag);
}

}  // namespace edge::hsm
