// Names of the management error codes, as they appear in logs and in the CLI.
#include <edge/mgmt/error.h>

namespace edge::mgmt {

const char* to_string(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::already_exists:
      return "already_exists";
    case ErrorCode::failed_precondition:
      return "failed_precondition";
    case ErrorCode::aborted:
      return "aborted";
    case ErrorCode::permission_denied:
      return "permission_denied";
    case ErrorCode::unauthenticated:
      return "unauthenticated";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::internal:
      return "internal";
  }
  return "unknown";
}

}  // namespace edge::mgmt
