// The typed property registry: every operator-settable value of ApplianceConfig by name.
#pragma once

#include <edge/mgmt/v1/agent.pb.h>
#include <edge/mgmt/v1/config.pb.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::mgmt {

enum class PropertyType { string, boolean, uint, enumeration, list };
const char* to_string(PropertyType t) noexcept;

struct PropertyDescriptor {
  std::string name;                  // canonical, e.g. "sip.flow_token.key_set"
  std::vector<std::string> aliases;  // e.g. "com.ibm.ws.sip.key.set"
  PropertyType type = PropertyType::string;
  std::string default_value;         // as text
  std::vector<std::string> allowed;  // enumeration values
  std::uint64_t min = 0, max = 0;    // uint range (inclusive)
  v1::RestartClass restart = v1::RESTART_FRONT_END;
  std::string description;
  // Reads the value out of a configuration, as text.
  std::function<std::string(const v1::ApplianceConfig&)> get;
  // Writes an already type-checked text value; throws MgmtError(invalid_argument)
  // with the reason when the value does not fit (e.g. "listen: unknown transport 'x'").
  std::function<void(v1::ApplianceConfig&, std::string_view)> set;
};

// A list value is written "a; b; c" (listen, advertise, mgmt.tls.roles).
class PropertyRegistry {
 public:
  // The registry of this product (every key of edged.conf).
  static const PropertyRegistry& instance();

  // By canonical name or alias; nullptr when unknown.
  const PropertyDescriptor* find(std::string_view name) const;
  const std::vector<PropertyDescriptor>& all() const { return props_; }

  // Type-checks `value` against the descriptor and writes it into `config`.
  // Throws MgmtError(invalid_argument) with the reason ("sip.flow_timer: '0x' is
  // not an unsigned integer", "unknown property 'sip.flowtimer'").
  void set(v1::ApplianceConfig& config, std::string_view name, std::string_view value) const;
  // Restores the default.
  void unset(v1::ApplianceConfig& config, std::string_view name) const;
  std::string get(const v1::ApplianceConfig& config, std::string_view name) const;

  // A configuration holding every default (flow-token security off, no listeners).
  v1::ApplianceConfig defaults() const;

  // What moving the running edge from `current` to `next` takes, from the
  // classes of the properties whose values differ: the worst of NONE <
  // FRONT_END < LISTENERS; PROCESS only when no property of those two classes
  // changed (a process-class value waits for the next start of edged, so it
  // does not make a front-end or listener change any heavier); NONE when
  // nothing differs. The management agent decides every restart with this,
  // once per change, and tells the front end (FrontEnd::apply).
  v1::RestartClass restart_class(const v1::ApplianceConfig& current, const v1::ApplianceConfig& next) const;

 private:
  PropertyRegistry();
  std::vector<PropertyDescriptor> props_;
};

// Parses an edged.conf text ("key = value" lines, '#' comments; "listen" and
// "advertise" may repeat and add one entry each) on top of the defaults.
// Throws MgmtError(invalid_argument) naming origin:line and the problem.
v1::ApplianceConfig import_conf_text(std::string_view text, std::string_view origin);

// Renders a configuration as edged.conf text (import_conf_text's inverse).
std::string export_conf_text(const v1::ApplianceConfig& config);

// The property names whose values differ ("sip.flow_timer: 30 -> 60").
std::vector<std::string> diff_properties(const v1::ApplianceConfig& from, const v1::ApplianceConfig& to);

}  // namespace edge::mgmt
