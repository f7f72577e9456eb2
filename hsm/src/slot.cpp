// Slot: slot/token enumeration, token selection by label/serial/RFC 7512 URI, C_InitToken.
#include <edge/hsm/error.h>
#include <edge/hsm/module.h>
#include <edge/hsm/secret.h>
#include <edge/hsm/slot.h>

#include <cstdio>
#include <cstring>
#include <utility>

namespace edge::hsm {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view in, std::string_view attr) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) {
      throw HsmError("PKCS#11 URI: truncated percent-escape in '" + std::string(attr) + "'");
    }
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0)
      throw HsmError("PKCS#11 URI: bad percent-escape in '" + std::string(attr) + "'");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool matches(const std::string& want, const std::string& have) {
  return want.empty() || want == have;
}

std::string describe(const TokenInfo& t) {
  return "'" + t.label + "' (serial " + t.serial + ", " + t.manufacturer + " " + t.model + ")";
}

}  // namespace

Pkcs11Uri parse_pkcs11_uri(std::string_view uri) {
  constexpr std::string_view scheme = "pkcs11:";
  if (uri.size() < scheme.size() || uri.substr(0, scheme.size()) != scheme) {
    throw HsmError("PKCS#11 URI must start with 'pkcs11:'");
  }
  std::string_view path = uri.substr(scheme.size());
  // The query (after '?') carries pin-source / pin-value / module-path: we take
  // none of them from a URI (PINs come from PinSource, the module from config).
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);

  Pkcs11Uri out;
  bool any = false;
  while (!path.empty()) {
    auto semi = path.find(';');
    std::string_view attr = path.substr(0, semi);
    path = semi == std::string_view::npos ? std::string_view{} : path.substr(semi + 1);
    if (attr.empty()) continue;
    auto eq = attr.find('=');
    if (eq == std::string_view::npos)
      throw HsmError("PKCS#11 URI: attribute without '=': '" + std::string(attr) + "'");
    std::string_view name = attr.substr(0, eq);
    std::string value = percent_decode(attr.substr(eq + 1), name);
    std::string* field = nullptr;
    if (name == "token")
      field = &out.token;
    else if (name == "serial")
      field = &out.serial;
    else if (name == "manufacturer")
      field = &out.manufacturer;
    else if (name == "model")
      field = &out.model;
    else if (name == "library-manufacturer")
      field = &out.library_manufacturer;
    else if (name == "library-description")
      field = &out.library_description;
    else if (name == "object" || name == "id" || name == "type" || name == "library-version")
      continue;
    else if (name == "slot-id" || name == "slot-description" || name == "slot-manufacturer") {
      throw HsmError("PKCS#11 URI: '" + std::string(name) +
                     "' is not supported: select the token by token/serial, slots are not stable");
    } else {
      throw HsmError("PKCS#11 URI: unknown attribute '" + std::string(name) + "'");
    }
    if (!field->empty())
      throw HsmError("PKCS#11 URI: attribute '" + std::string(name) + "' given twice");
    *field = std::move(value);
    any = true;
  }
  if (!any ||
      (out.token.empty() && out.serial.empty() && out.manufacturer.empty() && out.model.empty())) {
    throw HsmError("PKCS#11 URI selects no token: give at least token= or serial=");
  }
  return out;
}

Pkcs11Uri to_uri(const TokenSelector& selector) {
  if (!selector.uri.empty()) return parse_pkcs11_uri(selector.uri);
  if (selector.label.empty() && selector.serial.empty())
    throw HsmError("no token selected: give a token label or URI");
  Pkcs11Uri u;
  u.token = selector.label;
  u.serial = selector.serial;
  return u;
}

Slot::Slot(const Module& module, CK_SLOT_ID id) : fn_(module.functions()), id_(id) {}

std::vector<CK_SLOT_ID> Slot::list(const Module& module, bool token_present) {
  CK_FUNCTION_LIST* fn = module.functions();
  // The slot count can change between the two calls (SoftHSM adds a slot when
  // a token is initialized): retry on CKR_BUFFER_TOO_SMALL.
  for (;;) {
    CK_ULONG n = 0;
    if (CK_RV rv = fn->C_GetSlotList(token_present ? CK_TRUE : CK_FALSE, nullptr, &n);
        rv != CKR_OK) {
      throw Pkcs11Error("C_GetSlotList", rv);
    }
    std::vector<CK_SLOT_ID> ids(n);
    CK_RV rv = fn->C_GetSlotList(token_present ? CK_TRUE : CK_FALSE, ids.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) throw Pkcs11Error("C_GetSlotList", rv);
    ids.resize(n);
    return ids;
  }
}

SlotInfo Slot::slot_info() const {
  CK_SLOT_INFO i{};
  if (CK_RV rv = fn_->C_GetSlotInfo(id_, &i); rv != CKR_OK) throw Pkcs11Error("C_GetSlotInfo", rv);
  SlotInfo out;
  out.description = trim_padded(i.slotDescription, sizeof i.slotDescription);
  out.manufacturer = trim_padded(i.manufacturerID, sizeof i.manufacturerID);
  out.flags = i.flags;
  return out;
}

TokenInfo Slot::token_info() const {
  CK_TOKEN_INFO i{};
  if (CK_RV rv = fn_->C_GetTokenInfo(id_, &i); rv != CKR_OK)
    throw Pkcs11Error("C_GetTokenInfo", rv);
  TokenInfo out;
  out.label = trim_padded(i.label, sizeof i.label);
  out.manufacturer = trim_padded(i.manufacturerID, sizeof i.manufacturerID);
  out.model = trim_padded(i.model, sizeof i.model);
  out.serial = trim_padded(i.serialNumber, sizeof i.serialNumber);
  out.flags = i.flags;
  out.session_count = i.ulSessionCount;
  out.max_session_count = i.ulMaxSessionCount;
  out.min_pin_len = i.ulMinPinLen;
  out.max_pin_len = i.ulMaxPinLen;
  out.hardware_version = i.hardwareVersion;
  out.firmware_version = i.firmwareVersion;
  return out;
}

std::vector<CK_MECHANISM_TYPE> Slot::mechanisms() const {
  for (;;) {
    CK_ULONG n = 0;
    if (CK_RV rv = fn_->C_GetMechanismList(id_, nullptr, &n); rv != CKR_OK)
      throw Pkcs11Error("C_GetMechanismList", rv);
    std::vector<CK_MECHANISM_TYPE> m(n);
    CK_RV rv = fn_->C_GetMechanismList(id_, m.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) throw Pkcs11Error("C_GetMechanismList", rv);
    m.resize(n);
    return m;
  }
}

CK_MECHANISM_INFO Slot::mechanism_info(CK_MECHANISM_TYPE mechanism) const {
  CK_MECHANISM_INFO i{};
  if (CK_RV rv = fn_->C_GetMechanismInfo(id_, mechanism, &i); rv != CKR_OK) {
    throw Pkcs11Error("C_GetMechanismInfo", rv, mechanism_name(mechanism));
  }
  return i;
}

void Slot::init_token(const SecretString& so_pin, std::string_view label) const {
  if (label.empty() || label.size() > 32) throw HsmError("token label must be 1..32 bytes");
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), label.size());
  const std::string& pin = so_pin.expose();
  CK_RV rv = fn_->C_InitToken(id_, reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())),
                              pin.size(), padded);
  if (rv != CKR_OK) throw Pkcs11Error("C_InitToken", rv);
}

Slot find_token_slot(const Module& module, const TokenSelector& selector) {
  const Pkcs11Uri want = to_uri(selector);
  if (!want.library_manufacturer.empty() || !want.library_description.empty()) {
    ModuleInfo mi = module.info();
    if (!matches(want.library_manufacturer, mi.manufacturer) ||
        !matches(want.library_description, mi.description)) {
      throw HsmError("PKCS#11 URI names library '" + want.library_manufacturer + "' / '" +
                     want.library_description + "' but " + module.path() + " is '" +
                     mi.manufacturer + "' / '" + mi.description + "'");
    }
  }

  std::vector<CK_SLOT_ID> found;
  std::string seen;
  for (CK_SLOT_ID id : Slot::list(module, true)) {
    Slot s(module, id);
    TokenInfo t;
    try {
      t = s.token_info();
    } catch (const Pkcs11Error& e) {
      // A token that vanished between C_GetSlotList and C_GetTokenInfo.
      if (e.rv() == CKR_TOKEN_NOT_PRESENT || e.rv() == CKR_SLOT_ID_INVALID ||
          e.rv() == CKR_DEVICE_REMOVED)
        continue;
      throw;
    }
    if (!t.initialized()) continue;  // SoftHSM's spare slot
    if (!seen.empty()) seen += ", ";
    seen += describe(t);
    if (matches(want.token, t.label) && matches(want.serial, t.serial) &&
        matches(want.manufacturer, t.manufacturer) && matches(want.model, t.model)) {
      found.push_back(id);
    }
  }

  auto wanted = [&] {
    std::string w;
    auto add = [&](const char* k, const std::string& v) {
      if (v.empty()) return;
      if (!w.empty()) w += ' ';
      w += k;
      w += "='";
      w += v;
      w += '\'';
    };
    add("label", want.token);
    add("serial", want.serial);
    add("manufacturer", want.manufacturer);
    add("model", want.model);
    return w;
  };
  if (found.empty()) {
    throw HsmError("no token matches " + wanted() + " in " + module.path() +
                   " (tokens seen: " + (seen.empty() ? std::string("none") : seen) + ")");
  }
  if (found.size() > 1) {
    throw HsmError(std::to_string(found.size()) + " tokens match " + wanted() +
                   ": add the serial to choose one (tokens seen: " + seen + ")");
  }
  return Slot(module, found.front());
}

Slot find_uninitialized_slot(const Module& module) {
  for (CK_SLOT_ID id : Slot::list(module, true)) {
    Slot s(module, id);
    if (!s.token_info().initialized()) return s;
  }
  throw HsmError("no slot with an uninitialized token in " + module.path());
}

namespace {
struct MechanismName {
  CK_MECHANISM_TYPE type;
  const char* name;
};
// Generated from p11-kit's pkcs11.h; aliases (one value, two names) resolve to the first.
constexpr MechanismName kMechanismNames[] =
#include "mechanism_names.inc"
    ;
}  // namespace

std::string mechanism_name(CK_MECHANISM_TYPE mechanism) {
  for (const auto& m : kMechanismNames) {
    if (m.type == mechanism) return m.name;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKM_0x%lx", static_cast<unsigned long>(mechanism));
  return buf;
}

}  // namespace edge::hsm
