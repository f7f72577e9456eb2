// SelfTestReport: what Hsm::self_test found out about the module and token.
#pragma once

#include <edge/hsm/module.h>
#include <edge/hsm/slot.h>

#include <p11-kit/pkcs11.h>

#include <chrono>
#include <string>
#include <vector>

namespace edge::hsm {

struct SelfTestReport {
  std::string module_path;
  ModuleInfo module;
  CK_SLOT_ID slot_id = 0;
  TokenInfo token;
  std::vector<CK_MECHANISM_TYPE> mechanisms;
  bool has_sha256_hmac = false;             // CKM_SHA256_HMAC
  bool has_generic_secret_key_gen = false;  // CKM_GENERIC_SECRET_KEY_GEN
  CK_MECHANISM_INFO sha256_hmac_info{};     // key size range when present
  // Round trip with a temporary session key: generate, sign, C_Verify the
  // full tag, sign again (same tag), a modified message fails, destroy.
  bool round_trip_ok = false;
  std::string round_trip_detail;  // what failed, or the steps done
  std::chrono::microseconds round_trip_time{0};
  bool ok() const noexcept {
    return has_sha256_hmac && has_generic_secret_key_gen && round_trip_ok;
  }
};

}  // namespace edge::hsm
