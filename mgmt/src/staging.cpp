// Staging: edits of the candidate configuration through the property registry, and their views.
#include "staging.h"

#include <edge/mgmt/error.h>

#include <utility>

namespace edge::mgmt::agent_parts {

v1::ApplianceConfig Staging::candidate() const {
  std::lock_guard lock(mu_);
  return candidate_;
}

void Staging::reset(const v1::ApplianceConfig& config) {
  std::lock_guard lock(mu_);
  candidate_ = config;
}

v1::Property Staging::set(std::string_view name, std::string_view value, const v1::ApplianceConfig& running,
                          const Check& check) {
  std::lock_guard lock(mu_);
  v1::ApplianceConfig next = candidate_;
  reg_.set(next, name, value);
  const PropertyDescriptor& d = *reg_.find(name);
  if (check) check(d, next);
  candidate_ = std::move(next);
  return property(d, running);
}

v1::Property Staging::unset(std::string_view name, const v1::ApplianceConfig& running) {
  std::lock_guard lock(mu_);
  v1::ApplianceConfig next = candidate_;
  reg_.unset(next, name);
  const PropertyDescriptor& d = *reg_.find(name);
  candidate_ = std::move(next);
  return property(d, running);
}

bool Staging::stage_key_version(const std::string& key_set, std::uint32_t version) {
  std::lock_guard lock(mu_);
  if (candidate_.sip().flow_token().key_set() != key_set) return false;
  candidate_.mutable_sip()->mutable_flow_token()->set_key_version(version);
  return true;
}

void Staging::overlay(const std::vector<std::pair<std::string, std::string>>& edits) {
  std::lock_guard lock(mu_);
  v1::ApplianceConfig next = candidate_;
  for (const auto& [name, value] : edits) reg_.set(next, name, value);
  candidate_ = std::move(next);
}

std::vector<std::string> Staging::discard(const v1::ApplianceConfig& running) {
  std::lock_guard lock(mu_);
  auto dropped = diff_properties(running, candidate_);
  candidate_ = running;
  return dropped;
}

v1::Property Staging::get(std::string_view name, const v1::ApplianceConfig& running) const {
  const PropertyDescriptor* d = reg_.find(name);
  if (d == nullptr) throw MgmtError(ErrorCode::not_found, "unknown property '" + std::string(name) + "'");
  std::lock_guard lock(mu_);
  return property(*d, running);
}

v1::ListPropertiesResponse Staging::list(const v1::ApplianceConfig& running) const {
  std::lock_guard lock(mu_);
  v1::ListPropertiesResponse r;
  for (const auto& d : reg_.all()) *r.add_properties() = property(d, running);
  return r;
}

std::vector<std::string> Staging::staged(const v1::ApplianceConfig& running) const {
  std::lock_guard lock(mu_);
  return diff_properties(running, candidate_);
}

v1::Property Staging::property(const PropertyDescriptor& d, const v1::ApplianceConfig& running) const {
  v1::Property p;
  p.set_name(d.name);
  p.set_type(to_string(d.type));
  p.set_value(d.get(running));
  p.set_default_value(d.default_value);
  p.set_staged_value(d.get(candidate_));
  p.set_staged(p.staged_value() != p.value());
  p.set_restart(d.restart);
  p.set_description(d.description);
  for (const auto& a : d.aliases) p.add_aliases(a);
  for (const auto& a : d.allowed) p.add_allowed(a);
  return p;
}

}  // namespace edge::mgmt::agent_parts
