// Secrets (PINs) in a buffer that is wiped on destruction and never printed.
#pragma once

#include <string>
#include <string_view>

namespace edge::hsm {

// Holds a PIN. Wiped (explicit_bzero) on destruction and on clear(); has no
// stream operator and no implicit conversion, so it cannot reach a log by accident.
class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string_view value);
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  SecretString(SecretString&& other) noexcept;
  SecretString& operator=(SecretString&& other) noexcept;
  ~SecretString();

  void clear() noexcept;
  bool empty() const noexcept { return value_.empty(); }
  std::size_t size() const noexcept { return value_.size(); }
  // Only for handing to C_Login / C_InitToken; do not copy the result.
  const std::string& expose() const noexcept { return value_; }

 private:
  std::string value_;
};

// Where a PIN comes from: a file (first line, mode must not be group/world
// readable) or an environment variable. Never from the configuration itself.
struct PinSource {
  enum class Kind { file, env } kind = Kind::file;
  std::string location;  // path or variable name
};

// Reads the PIN; throws HsmError with a reason (never the PIN) on failure.
SecretString read_pin(const PinSource& source);

}  // namespace edge::hsm
