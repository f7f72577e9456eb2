// MgmtError: a refused or failed management call, with a code the API maps to a gRPC status.
#pragma once

#include <stdexcept>
#include <string>

namespace edge::mgmt {

// The subset of gRPC status codes the agent answers with (same meaning).
enum class ErrorCode {
  invalid_argument,     // bad name, badly typed value, out of range
  not_found,            // no such key set / property / generation
  already_exists,       // key set exists
  failed_precondition,  // nothing staged, stale expected generation, in use, confirm pending
  aborted,              // another apply is running; apply rolled back (health check)
  permission_denied,    // caller's role is not enough
  unauthenticated,      // caller not identified
  unavailable,          // HSM unavailable
  internal,             // store write failed, ...
};

const char* to_string(ErrorCode c) noexcept;

class MgmtError : public std::runtime_error {
 public:
  MgmtError(ErrorCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace edge::mgmt
