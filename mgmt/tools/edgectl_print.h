// edgectl's human-readable output: aligned key/value blocks and tables for the API's messages.
#pragma once

#include <edge/mgmt/v1/agent.pb.h>

#include <ostream>
#include <string>
#include <vector>

namespace edgectl {

// "key: value" lines with the values aligned.
class Fields {
 public:
  Fields& add(std::string key, std::string value);
  void print(std::ostream& out) const;

 private:
  std::vector<std::pair<std::string, std::string>> rows_;
};

// Columns padded to their widest cell; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  Table& add(std::vector<std::string> row);
  void print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string utc_time_ms(std::int64_t unix_ms);

void print_status(std::ostream& out, const edge::mgmt::v1::Status& s);
void print_key_sets(std::ostream& out, const edge::mgmt::v1::ListKeySetsResponse& r);
void print_key_set(std::ostream& out, const edge::mgmt::v1::KeySet& k);
void print_key_set_change(std::ostream& out, const edge::mgmt::v1::KeySetChange& c);
void print_properties(std::ostream& out, const edge::mgmt::v1::ListPropertiesResponse& r);
void print_property(std::ostream& out, const edge::mgmt::v1::Property& p);
// The configuration as edged.conf-style "name = value" lines; `staged`: the candidate.
void print_config(std::ostream& out, const edge::mgmt::v1::GetConfigResponse& c,
                  const edge::mgmt::v1::ListPropertiesResponse& props, bool staged);
void print_apply(std::ostream& out, const edge::mgmt::v1::ApplyResponse& r);
void print_generations(std::ostream& out, const edge::mgmt::v1::ListGenerationsResponse& r);
void print_event(std::ostream& out, const edge::mgmt::v1::Event& e);
void print_cell_status(std::ostream& out, const edge::mgmt::v1::CellStatusResponse& s);
// This member's id and fingerprint, the members found, and the approvals to make both ways.
void print_cell_join(std::ostream& out, const edge::mgmt::v1::CellJoinResponse& r);

}  // namespace edgectl
