// RequestMemory: a bounded, thread-safe map from request id to the answer it got.
#include "request_memory.h"

namespace edge::mgmt::agent_parts {

std::optional<v1::ApplyResponse> RequestMemory::replay(const std::string& request_id) const {
  if (request_id.empty()) return std::nullopt;
  std::lock_guard lock(mu_);
  for (const auto& [id, response] : answers_) {
    if (id == request_id) {
      v1::ApplyResponse r = response;
      r.set_replayed(true);
      return r;
    }
  }
  return std::nullopt;
}

void RequestMemory::remember(const std::string& request_id, const v1::ApplyResponse& response) {
  if (request_id.empty() || capacity_ == 0) return;
  std::lock_guard lock(mu_);
  answers_.emplace_back(request_id, response);
  while (answers_.size() > capacity_) answers_.pop_front();
}

}  // namespace edge::mgmt::agent_parts
