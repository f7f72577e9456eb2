// KeySetAdmin: key-set administration in the HSM (create, rotate, retire, destroy) and the key-set views.
//
// Owns: no state of its own. Key sets live in the HSM objects (KeySetManager);
// what the rest of the agent knows about them (which configurations name a
// set, what the front end mints with) comes in through the Users callback, and
// staging a rotated version through the caller's callback. It also answers the
// HSM questions of the other parts: can a configuration mint now (apply), does
// a staged key-set edit name something the HSM has (staging).
//
// Locking: admin_mu_ serializes the changes (create, rotate, retire,
// destroy), each from its in-use check to its HSM step, so two operators can
// never both pass a check and then both act (two rotations each destroying a
// version the other still counted on). The views and the checks take no lock:
// the HSM answers them as it stands. Users never waits for an apply (it reads
// snapshots), so neither does a view; a configuration an apply is moving to
// counts as a user, so the changes need not wait for the apply either.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/mgmt/properties.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace edge::mgmt::agent_parts {

// The configurations that may mint with a key set, and what the front end says it mints with.
struct KeySetUsers {
  v1::ApplianceConfig committed, running, candidate;
  std::optional<v1::ApplianceConfig> applying;  // the target of an apply in progress
  std::string fe_key_set;
  std::uint32_t fe_minting = 0;
};

class KeySetAdmin {
 public:
  using Users = std::function<KeySetUsers()>;
  // `changed` runs after a version stopped verifying (retire, destroy, a rotation
  // that destroyed versions beyond `retain`): the
  // front end must learn it now (FrontEnd::key_sets_changed).
  KeySetAdmin(hsm::Hsm& hsm, Users users, std::function<void()> changed);

  v1::ListKeySetsResponse list();
  v1::KeySet get(const std::string& name);

  v1::KeySetChange create(const v1::CreateKeySetRequest& r);
  // `stage(version)` stages the new version on the candidate when the
  // candidate uses the set and says whether it did; `detail` gains the version.
  v1::KeySetChange rotate(const v1::RotateKeySetRequest& r, std::string& detail,
                          const std::function<bool(std::uint32_t)>& stage);
  v1::KeySetChange retire(const v1::RetireKeyVersionRequest& r);
  v1::KeySetChange destroy(const v1::DestroyKeySetRequest& r);

  // The key set `c` names exists and its version (the configured one or the
  // newest active one) really signs and verifies in the HSM now. Throws
  // MgmtError(failed_precondition or unavailable) with the reason.
  void check_mints(const v1::ApplianceConfig& c);
  // Refuses a staged edit of the key set or version that the HSM cannot mint
  // with (Staging::Check): refused when staged, not at the apply.
  void check_staged(const PropertyDescriptor& d, const v1::ApplianceConfig& next);

 private:
  hsm::Hsm& hsm_;
  Users users_;
  std::function<void()> changed_;
  std::mutex admin_mu_;
};

}  // namespace edge::mgmt::agent_parts
