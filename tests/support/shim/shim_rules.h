// Fault rules of the PKCS#11 fault shim: parsing of the control file and the firing decision.
//
// Shared by the shim module (which applies the rules) and edge_test_support (which
// parses a test's rules before writing them, so a typo fails the test instead of
// silently injecting nothing). The syntax is documented in p11shim.cpp and README.md.
#pragma once

#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::test::shim {

// The functions the shim wraps. Every one of them can be named in a rule;
// `*` matches all of them except C_Finalize (never faulted, only counted).
enum class Fn : std::uint8_t {
  C_Initialize,
  C_Finalize,
  C_GetInfo,
  C_GetSlotList,
  C_GetSlotInfo,
  C_GetTokenInfo,
  C_GetMechanismInfo,
  C_OpenSession,
  C_CloseSession,
  C_CloseAllSessions,
  C_GetSessionInfo,
  C_Login,
  C_Logout,
  C_CreateObject,
  C_DestroyObject,
  C_GetAttributeValue,
  C_SetAttributeValue,
  C_FindObjectsInit,
  C_FindObjects,
  C_FindObjectsFinal,
  C_SignInit,
  C_Sign,
  C_VerifyInit,
  C_Verify,
  C_GenerateKey,
  C_GenerateRandom,
  kCount
};
inline constexpr std::size_t kFnCount = static_cast<std::size_t>(Fn::kCount);

const char* fn_name(Fn f) noexcept;
std::optional<Fn> fn_from_name(std::string_view name) noexcept;

// "CKR_DEVICE_ERROR" or "0x30" -> value; nullopt when unknown.
std::optional<CK_RV> ckr_from_name(std::string_view name) noexcept;
// CK_RV -> "CKR_DEVICE_ERROR"; "CKR_0x..." for codes not in the table.
std::string ckr_to_name(CK_RV rv);

struct Rule {
  bool all = false;            // `*`
  Fn fn = Fn::C_Initialize;    // when !all
  std::optional<CK_RV> rv;     // fail with this code when the rule fires
  std::uint64_t count = 0;     // fire at most this many times (0 = unlimited)
  std::uint64_t every = 0;     // fire on every Nth matching call (0 = each call)
  std::uint64_t after = 0;     // let the first N matching calls through
  std::uint64_t delay_ms = 0;  // sleep this long when the rule fires
  std::uint64_t delay_us = 0;  // ... plus this many microseconds
  // When the rule fires, at most this many calls it fired for are inside the module at once
  // (the delay and the real call); further callers wait for a slot. 0: no cap.
  std::uint64_t max_concurrent = 0;
  // C_GetTokenInfo only: OR these flags (token_flags=0xHEX or decimal) into the real answer,
  // e.g. CKF_USER_PIN_FINAL_TRY, which SoftHSM never sets.
  std::uint64_t token_flags = 0;

  // Runtime state, reset whenever the control file is re-read.
  std::uint64_t seen = 0;
  std::uint64_t fired = 0;

  bool matches(Fn f) const noexcept { return all ? f != Fn::C_Finalize : f == fn; }
  // Counts one matching call and says whether the rule fires for it.
  bool fire() noexcept;
};

struct ParseResult {
  std::vector<Rule> rules;
  std::vector<std::string> errors;  // "line 3: unknown function C_Sing"
};

ParseResult parse_rules(std::string_view text);

// What the shim does with one call after consulting every matching rule:
// the delays of all firing rules add up; the first firing rule with a code decides
// the failure; the call takes a slot of every firing rule with max_concurrent (in rule
// order, so two callers never wait on each other's slots in opposite orders).
struct Decision {
  std::optional<CK_RV> rv;
  std::uint64_t delay_us = 0;       // delay_ms * 1000 + delay_us of every firing rule
  std::uint64_t token_flags = 0;    // OR of token_flags of every firing rule
  std::vector<std::size_t> capped;  // indices (into the rules) of firing rules with max_concurrent
};
Decision decide(std::vector<Rule>& rules, Fn f);

}  // namespace edge::test::shim
