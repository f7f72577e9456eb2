// Staging: the candidate configuration, i.e. the running one plus the operator's staged edits.
//
// Owns: the candidate, and nothing else. What it is compared with (the
// running configuration) belongs to the change controller and is passed in by
// the caller, so there is one copy of it, not two that could disagree.
// Locking: one mutex guarding the candidate. An edit is a read-modify-write
// under it, its checks included (the HSM look-ups of a key-set edit), so two
// concurrent edits never lose one another; the check is the only call out
// under it and takes no other part's lock. An apply holds it only to copy the
// candidate, so staging never waits for an apply and an apply never waits for
// more than one edit.
#pragma once

#include <edge/mgmt/properties.h>
#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::mgmt::agent_parts {

class Staging {
 public:
  // Checks an edited candidate before it is kept; throws MgmtError with the refusal.
  using Check = std::function<void(const PropertyDescriptor&, const v1::ApplianceConfig& next)>;

  explicit Staging(const PropertyRegistry& registry) : reg_(registry) {}

  v1::ApplianceConfig candidate() const;
  // Drops every staged edit: the candidate becomes `config` (start, rollback,
  // a dropped confirmed commit).
  void reset(const v1::ApplianceConfig& config);

  // Stages `value` (throws MgmtError(invalid_argument) for a bad name or
  // value, or whatever `check` throws); returns the property as it now reads.
  v1::Property set(std::string_view name, std::string_view value, const v1::ApplianceConfig& running,
                   const Check& check);
  // Stages the default.
  v1::Property unset(std::string_view name, const v1::ApplianceConfig& running);
  // A key-set rotation: when the candidate uses `key_set`, stages `version` as
  // its minting version and returns true.
  bool stage_key_version(const std::string& key_set, std::uint32_t version);
  // The agent's own applied edits (ChangeController::apply_edits), laid on the
  // candidate so that the operator's next apply does not undo them.
  void overlay(const std::vector<std::pair<std::string, std::string>>& edits);
  // Drops every staged edit (the candidate becomes `running`); returns them.
  std::vector<std::string> discard(const v1::ApplianceConfig& running);

  // Property views: value from `running`, staged value from the candidate.
  v1::Property get(std::string_view name, const v1::ApplianceConfig& running) const;
  v1::ListPropertiesResponse list(const v1::ApplianceConfig& running) const;
  // "name: old -> new" for every staged edit.
  std::vector<std::string> staged(const v1::ApplianceConfig& running) const;

 private:
  v1::Property property(const PropertyDescriptor& d, const v1::ApplianceConfig& running) const;  // under mu_

  const PropertyRegistry& reg_;
  mutable std::mutex mu_;
  v1::ApplianceConfig candidate_;
};

}  // namespace edge::mgmt::agent_parts
