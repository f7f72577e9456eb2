// Lab provisioning: a SoftHSM2 token with generated PINs under a state directory, for development
// and tests.
#pragma once

#include <edge/hsm/hsm.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace edge::hsm {

inline constexpr std::string_view kLabTokenLabel = "edge-lab";

// The lab HSM's files under a state directory (made absolute):
//   <state>/hsm/softhsm2.conf   directories.tokendir = <state>/hsm/tokens, file backend
//   <state>/hsm/tokens/         SoftHSM's token store
//   <state>/hsm/user-pin        mode 0600, 16 random characters
//   <state>/hsm/so-pin          mode 0600, 16 random characters
struct LabPaths {
  explicit LabPaths(const std::filesystem::path& state_dir);
  std::filesystem::path state_dir, hsm_dir, softhsm_conf, tokens_dir, user_pin, so_pin;
};

// $EDGE_STATE_DIR, or ./var when it is unset or empty.
std::filesystem::path default_state_dir();

struct LabToken {
  LabPaths paths;
  std::string label, serial;
  bool token_created = false;  // false: it was there already
  bool pins_created = false;   // new PIN files were written
};

// Makes sure the lab token exists; idempotent. Creates the directories, the
// SoftHSM configuration and the PIN files when missing (never overwrites one),
// exports SOFTHSM2_CONF for this process (SoftHSM reads it at C_Initialize, so
// call this before anything else in the process loads SoftHSM), loads
// SoftHSM (EDGE_SOFTHSM_MODULE) and, when no token has the label,
// initializes the free slot's token with the SO PIN and sets the user PIN.
// Also completes a token whose user PIN was never set (an interrupted run).
// Throws HsmError / Pkcs11Error; never with a PIN in the message.
LabToken provision_lab_token(const std::filesystem::path& state_dir, std::string_view label = kLabTokenLabel);

// The HsmConfig of the lab token: module EDGE_SOFTHSM_MODULE, token label,
// user PIN file, and softhsm2_conf so Hsm exports SOFTHSM2_CONF itself.
HsmConfig lab_hsm_config(const std::filesystem::path& state_dir, std::string_view label = kLabTokenLabel);

// How the offline tools (edge-hsm, edge-image) name an HSM on their command
// line: the lab token of a state directory, or a module + token + PIN source.
struct ToolHsmOptions {
  std::optional<std::string> state_dir, module, token, token_uri, pin_file, pin_env;
};

// Resolves ToolHsmOptions to an HsmConfig (max_sessions still to be set by the
// caller). Throws std::invalid_argument for a contradictory or incomplete
// command line ("--module needs --pin-file or --pin-env") and HsmError when
// the lab token of the state directory was never made.
HsmConfig tool_hsm_config(const ToolHsmOptions& o);

}  // namespace edge::hsm
