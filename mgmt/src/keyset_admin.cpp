// KeySetAdmin: key-set changes in the HSM with their in-use checks, and the KeySet messages.
#include "keyset_admin.h"

#include <edge/hsm/error.h>
#include <edge/mgmt/error.h>

#include <algorithm>
#include <array>
#include <set>
#include <utility>

namespace edge::mgmt::agent_parts {
namespace {

using v1::ApplianceConfig;

// HSM failures become API errors: a refusal of the token itself (PKCS#11) or
// an HSM in back-off is "unavailable"; a refused management step (no such
// version, numbers exhausted) is a precondition the operator can fix.
template <class F>
auto hsm_call(hsm::Hsm& h, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const hsm::Pkcs11Error& e) {
    throw MgmtError(ErrorCode::unavailable, e.what());
  } catch (const hsm::HsmError& e) {
    throw MgmtError(
        h.state() == hsm::HsmState::available ? ErrorCode::failed_precondition : ErrorCode::unavailable,
        e.what());
  }
}

// The version a configuration mints with for key set `info` (0: it does not use the set).
std::uint32_t mints_with(const ApplianceConfig& c, const hsm::KeySetInfo& info) {
  const auto& ft = c.sip().flow_token();
  if (ft.key_set() != info.name) return 0;
  return ft.key_version() != 0 ? ft.key_version() : info.minting_version();
}

bool active_version(const hsm::KeySetInfo& info, std::uint32_t v) {
  return std::any_of(info.versions.begin(), info.versions.end(), [&](const hsm::KeyVersionInfo& k) {
    return k.version == v && k.state == hsm::KeyState::active;
  });
}

v1::KeySet key_set_message(const hsm::KeySetInfo& info, const KeySetUsers& u) {
  // Between a rotation and the apply, the running front end still mints
  // with the version its key-set view was configured with: ask it.
  const std::uint32_t running_mint =
      u.fe_key_set == info.name && u.fe_minting != 0 ? u.fe_minting : mints_with(u.running, info);
  const std::uint32_t staged_mint = mints_with(u.candidate, info);
  v1::KeySet ks;
  ks.set_name(info.name);
  ks.set_retain(info.retain);
  for (const auto& v : info.versions) {
    auto* kv = ks.add_versions();
    kv->set_version(v.version);
    kv->set_active(v.state == hsm::KeyState::active);
    kv->set_created_unix(v.created_unix);
    kv->set_minting(v.version == running_mint);
    kv->set_staged_minting(v.version == staged_mint);
  }
  for (const auto* c : {&u.committed, &u.running, &u.candidate}) {
    if (c->sip().flow_token().key_set() == info.name) ks.set_in_use(true);
  }
  return ks;
}

// Versions of `info` that some configuration (or the front end) mints with.
std::set<std::uint32_t> versions_in_use(const hsm::KeySetInfo& info, const KeySetUsers& u) {
  std::set<std::uint32_t> out;
  for (const auto* c : {&u.committed, &u.running, &u.candidate}) {
    if (const auto v = mints_with(*c, info); v != 0) out.insert(v);
  }
  if (u.applying) {
    if (const auto v = mints_with(*u.applying, info); v != 0) out.insert(v);
  }
  if (u.fe_key_set == info.name && u.fe_minting != 0) out.insert(u.fe_minting);
  return out;
}

}  // namespace

KeySetAdmin::KeySetAdmin(hsm::Hsm& hsm, Users users, std::function<void()> changed)
    : hsm_(hsm), users_(std::move(users)), changed_(std::move(changed)) {}

v1::ListKeySetsResponse KeySetAdmin::list() {
  const auto infos = hsm_call(hsm_, [&] { return hsm_.keysets().list(); });
  const KeySetUsers u = users_();
  v1::ListKeySetsResponse r;
  for (const auto& info : infos) *r.add_key_sets() = key_set_message(info, u);
  return r;
}

v1::KeySet KeySetAdmin::get(const std::string& name) {
  if (!hsm::valid_key_set_name(name))
    throw MgmtError(ErrorCode::invalid_argument, "invalid key set name '" + name + "'");
  const auto info = hsm_call(hsm_, [&] {
    if (!hsm_.keysets().exists(name))
      throw MgmtError(ErrorCode::not_found, "key set '" + name + "' does not exist");
    return hsm_.keysets().get(name);
  });
  return key_set_message(info, users_());
}

v1::KeySetChange KeySetAdmin::create(const v1::CreateKeySetRequest& r) {
  if (!hsm::valid_key_set_name(r.name())) {
    throw MgmtError(ErrorCode::invalid_argument,
                    "invalid key set name '" + r.name() + "' (1..64 characters of A-Z a-z 0-9 . _ -)");
  }
  const std::uint32_t retain = r.retain() == 0 ? hsm::kDefaultRetain : r.retain();
  if (retain > hsm::kMaxRetain) {
    throw MgmtError(ErrorCode::invalid_argument, "retain must be 1.." + std::to_string(hsm::kMaxRetain));
  }
  std::lock_guard lock(admin_mu_);
  const auto info = hsm_call(hsm_, [&] {
    if (hsm_.keysets().exists(r.name())) {
      throw MgmtError(ErrorCode::already_exists, "key set '" + r.name() + "' already exists");
    }
    return hsm_.keysets().create(r.name(), retain);
  });
  v1::KeySetChange ch;
  *ch.mutable_key_set() = key_set_message(info, users_());
  ch.set_note("created with version 1");
  return ch;
}

v1::KeySetChange KeySetAdmin::rotate(const v1::RotateKeySetRequest& r, std::string& detail,
                                     const std::function<bool(std::uint32_t)>& stage) {
  std::lock_guard lock(admin_mu_);
  const auto before = hsm_call(hsm_, [&] {
    if (!hsm::valid_key_set_name(r.name()) || !hsm_.keysets().exists(r.name())) {
      throw MgmtError(ErrorCode::not_found, "key set '" + r.name() + "' does not exist");
    }
    return hsm_.keysets().get(r.name());
  });
  // The rotation destroys the oldest versions beyond `retain`: never one
  // that a configuration or the running front end still mints with.
  const std::uint32_t retain = before.retain == 0 ? hsm::kDefaultRetain : before.retain;
  const std::size_t destroyed = before.versions.size() + 1 > retain ? before.versions.size() + 1 - retain : 0;
  if (destroyed > 0) {
    const auto in_use = versions_in_use(before, users_());
    for (std::size_t i = 0; i < destroyed && i < before.versions.size(); ++i) {
      if (in_use.count(before.versions[i].version) != 0) {
        throw MgmtError(ErrorCode::failed_precondition,
                        "rotating key set '" + r.name() + "' would destroy version " +
                            std::to_string(before.versions[i].version) + ", which still mints (retain " +
                            std::to_string(retain) + ")");
      }
    }
  }
  const auto v = hsm_call(hsm_, [&] { return hsm_.keysets().rotate(r.name()); });
  // Versions beyond `retain` are gone: tokens minted with them stop verifying now.
  if (destroyed > 0) changed_();
  detail += " -> version " + std::to_string(v.version);
  v1::KeySetChange ch;
  // Staged, not live: the front end switches at the next apply, after the
  // new version passed a mint/verify round trip.
  ch.set_staged(stage(v.version));
  ch.set_note(ch.staged() ? "version " + std::to_string(v.version) +
                                " staged as sip.flow_token.key_version; it mints after apply"
                          : "version " + std::to_string(v.version) +
                                " created; the configuration does not use " + r.name());
  const auto after = hsm_call(hsm_, [&] { return hsm_.keysets().get(r.name()); });
  *ch.mutable_key_set() = key_set_message(after, users_());
  return ch;
}

v1::KeySetChange KeySetAdmin::retire(const v1::RetireKeyVersionRequest& r) {
  std::lock_guard lock(admin_mu_);
  const auto info = hsm_call(hsm_, [&] {
    if (!hsm::valid_key_set_name(r.name()) || !hsm_.keysets().exists(r.name())) {
      throw MgmtError(ErrorCode::not_found, "key set '" + r.name() + "' does not exist");
    }
    return hsm_.keysets().get(r.name());
  });
  if (std::none_of(info.versions.begin(), info.versions.end(),
                   [&](const hsm::KeyVersionInfo& k) { return k.version == r.version(); })) {
    throw MgmtError(ErrorCode::not_found,
                    "key set '" + r.name() + "' has no version " + std::to_string(r.version()));
  }
  if (versions_in_use(info, users_()).count(r.version()) != 0) {
    throw MgmtError(ErrorCode::failed_precondition,
                    "version " + std::to_string(r.version()) + " of key set '" + r.name() +
                        "' mints for the running, pending or staged configuration; rotate and apply first");
  }
  hsm_call(hsm_, [&] { hsm_.keysets().retire(r.name(), r.version()); });
  changed_();
  const auto after = hsm_call(hsm_, [&] { return hsm_.keysets().get(r.name()); });
  v1::KeySetChange ch;
  *ch.mutable_key_set() = key_set_message(after, users_());
  ch.set_note("version " + std::to_string(r.version()) + " retired: tokens minted with it no longer verify");
  return ch;
}

v1::KeySetChange KeySetAdmin::destroy(const v1::DestroyKeySetRequest& r) {
  std::lock_guard lock(admin_mu_);
  const auto info = hsm_call(hsm_, [&] {
    if (!hsm::valid_key_set_name(r.name()) || !hsm_.keysets().exists(r.name())) {
      throw MgmtError(ErrorCode::not_found, "key set '" + r.name() + "' does not exist");
    }
    return hsm_.keysets().get(r.name());
  });
  const KeySetUsers u = users_();
  const bool applying = u.applying && u.applying->sip().flow_token().key_set() == r.name();
  if (key_set_message(info, u).in_use() || u.fe_key_set == r.name() || applying) {
    throw MgmtError(ErrorCode::failed_precondition,
                    "key set '" + r.name() + "' is named by the running, pending or staged configuration");
  }
  hsm_call(hsm_, [&] { hsm_.keysets().destroy(r.name()); });
  changed_();
  v1::KeySetChange ch;
  ch.mutable_key_set()->set_name(r.name());
  ch.set_note("destroyed: tokens minted with it no longer verify");
  return ch;
}

void KeySetAdmin::check_mints(const ApplianceConfig& c) {
  const auto& ft = c.sip().flow_token();
  if (ft.key_set().empty()) return;
  const std::string& name = ft.key_set();
  hsm_call(hsm_, [&] {
    if (!hsm_.keysets().exists(name)) {
      throw MgmtError(ErrorCode::failed_precondition, "key set '" + name + "' does not exist in the HSM");
    }
    const hsm::KeySetInfo info = hsm_.keysets().get(name);
    const std::uint32_t v = ft.key_version() != 0 ? ft.key_version() : info.minting_version();
    if (v == 0)
      throw MgmtError(ErrorCode::failed_precondition, "key set '" + name + "' has no active version");
    if (!active_version(info, v)) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "key set '" + name + "' has no active version " + std::to_string(v) +
                          " (sip.flow_token.key_version)" + hsm::refused_text(info.refused, v));
    }
    auto mac = hsm_.mac_for(name);
    mac->refresh();
    mac->set_minting_version(v);
    static constexpr std::array<std::uint8_t, 24> kProbe{'e', 'd', 'g', 'e', '-', 'm', 'g', 'm',
                                                         't', '-', 'a', 'p', 'p', 'l', 'y', '-',
                                                         'p', 'r', 'o', 'b', 'e', '-', 'v', '1'};
    hsm::MacTag tag{};
    const auto refuse = [&](const char* step, hsm::MacStatus st) {
      throw MgmtError(
          st == hsm::MacStatus::unavailable ? ErrorCode::unavailable : ErrorCode::failed_precondition,
          "key set '" + name + "' version " + std::to_string(v) + ": " + step +
              " failed: " + hsm::to_string(st));
    };
    if (const auto st = mac->sign(v, kProbe, tag); st != hsm::MacStatus::ok) refuse("sign", st);
    if (const auto st = mac->verify(v, kProbe, tag); st != hsm::MacStatus::ok) refuse("verify", st);
  });
}

void KeySetAdmin::check_staged(const PropertyDescriptor& d, const ApplianceConfig& next) {
  const auto& ft = next.sip().flow_token();
  // Naming a key set the HSM cannot mint with is refused now, not at apply.
  if (d.name == "sip.flow_token.key_set" && !ft.key_set().empty()) {
    hsm_call(hsm_, [&] {
      if (!hsm_.keysets().exists(ft.key_set())) {
        throw MgmtError(ErrorCode::failed_precondition,
                        "key set '" + ft.key_set() + "' does not exist in the HSM");
      }
      if (hsm_.keysets().get(ft.key_set()).minting_version() == 0) {
        throw MgmtError(ErrorCode::failed_precondition,
                        "key set '" + ft.key_set() + "' has no active version");
      }
    });
  }
  if (d.name == "sip.flow_token.key_version" && ft.key_version() != 0 && !ft.key_set().empty()) {
    hsm_call(hsm_, [&] {
      if (hsm_.keysets().exists(ft.key_set()) &&
          !active_version(hsm_.keysets().get(ft.key_set()), ft.key_version())) {
        throw MgmtError(
            ErrorCode::failed_precondition,
            "key set '" + ft.key_set() + "' has no active version " + std::to_string(ft.key_version()));
      }
    });
  }
}

}  // namespace edge::mgmt::agent_parts
