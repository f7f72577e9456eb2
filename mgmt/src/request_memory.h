// RequestMemory: the answers of recent applies and rollbacks by request id, so that a retried call is
// answered again instead of being carried out twice.
//
// Owns: a bounded list of (request id, response), oldest first; it is filled
// at start from the request ids the config store kept, so a retry after a
// restart of edged is recognised too. Locking: one mutex, held only to read or
// append the list, never while calling out. The change controller remembers
// an answer before it releases its own lock, so a retry that waited for that
// lock finds the answer of the attempt it waited for.
#pragma once

#include <edge/mgmt/v1/agent.pb.h>

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace edge::mgmt::agent_parts {

class RequestMemory {
 public:
  // `capacity` 0 remembers nothing.
  explicit RequestMemory(std::size_t capacity) : capacity_(capacity) {}

  // The remembered answer with replayed set; nullopt for an empty or unknown id.
  std::optional<v1::ApplyResponse> replay(const std::string& request_id) const;
  // Forgets the oldest answer beyond the capacity. An empty id is not remembered.
  void remember(const std::string& request_id, const v1::ApplyResponse& response);

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::deque<std::pair<std::string, v1::ApplyResponse>> answers_;
};

}  // namespace edge::mgmt::agent_parts
