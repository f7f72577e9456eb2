// A throw-away SoftHSM2 token per test: its own directory, config, token, PINs and PIN file.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/test/process.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace edge::test {

// Path of the real SoftHSM2 module found at configure time.
const char* softhsm_module_path() noexcept;

struct SoftHsmTokenOptions {
  std::string label;  // empty: a unique "edge-t-<pid>-<n>"
  std::string so_pin = "so-pin-0000";
  std::string user_pin = "user-pin-1234";
  std::size_t max_sessions = 4;
};

// Creates <tmp>/edge-softhsm-XXXXXX/ holding
//   softhsm2.conf  (tokendir = tokens/, objectstore.backend = file, log.level = ERROR)
//   tokens/        the token directory
//   user.pin       the user PIN and a newline, mode 0600
// points SOFTHSM2_CONF at it (restored on destruction), initialises one token with
// `softhsm2-util --init-token --free` and removes everything again on destruction.
// Throws std::runtime_error when SoftHSM2 (module or softhsm2-util) is missing, so a
// test that needs it fails rather than skips.
//
// SoftHSM reads SOFTHSM2_CONF at C_Initialize: one token object per process at a time
// (every CTest test is its own process).
class SoftHsmToken {
 public:
  explicit SoftHsmToken(SoftHsmTokenOptions options = {});
  ~SoftHsmToken();
  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;

  const std::filesystem::path& dir() const noexcept { return dir_->path(); }
  const std::filesystem::path& conf_path() const noexcept { return conf_; }
  std::filesystem::path token_root() const { return dir() / "tokens"; }
  // The token's own object directory (tokens/<uuid>/), e.g. to rename it away.
  std::filesystem::path token_object_dir() const;
  const std::filesystem::path& pin_file() const noexcept { return pin_file_; }
  const std::string& label() const noexcept { return options_.label; }
  const std::string& so_pin() const noexcept { return options_.so_pin; }
  const std::string& user_pin() const noexcept { return options_.user_pin; }
  // Token serial number as SoftHSM reports it (softhsm2-util --show-slots).
  std::string serial() const;
  // Serial of any token in this token directory, by its label.
  std::string serial_of(const std::string& label) const;
  // RFC 7512 URI of the token: "pkcs11:token=<label>;serial=<serial>".
  std::string uri() const;

  // Module = SoftHSM, token by label, PIN from the 0600 file, small pool, short back-off.
  edge::hsm::HsmConfig config() const;

  // Another token in the same token directory (to show we find by label, not index).
  void init_extra_token(const std::string& label) const;

  // Environment for child processes that must see this token (SOFTHSM2_CONF=...).
  std::vector<std::pair<std::string, std::string>> child_env() const;

 private:
  SoftHsmTokenOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::filesystem::path conf_;
  std::filesystem::path pin_file_;
  std::unique_ptr<ScopedEnv> env_;
  mutable std::string serial_;
};

// Writes `content` to `path` with mode `mode` (atomically: temp file + rename).
void write_file(const std::filesystem::path& path, std::string_view content, unsigned mode = 0600);
std::string read_file(const std::filesystem::path& path);

}  // namespace edge::test
