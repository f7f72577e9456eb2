// SecretString (wiped PIN buffer) and read_pin (PIN from a private file or an environment
// variable).
#include <edge/hsm/error.h>
#include <edge/hsm/secret.h>

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <system_error>

namespace edge::hsm {

namespace {

// Longer than any PIN a token accepts (SoftHSM: 255); a bigger file is not a PIN file.
constexpr std::size_t kMaxPinFile = 1024;
// Past the small-string buffer, so the characters live on the heap and a move
// hands over the pointer instead of copying the PIN into another buffer.
constexpr std::size_t kMinCapacity = 32;

void wipe(std::string& s) noexcept {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace

SecretString::SecretString(std::string_view value) {
  value_.reserve(value.size() < kMinCapacity ? kMinCapacity : value.size());
  value_.assign(value.data(), value.size());
}

SecretString::SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) {
  wipe(other.value_);
}

SecretString& SecretString::operator=(SecretString&& other) noexcept {
  if (this != &other) {
    wipe(value_);
    value_ = std::move(other.value_);
    wipe(other.value_);
  }
  return *this;
}

SecretString::~SecretString() { wipe(value_); }

void SecretString::clear() noexcept { wipe(value_); }

namespace {

// First line of the buffer, without the line end.
std::string_view first_line(std::string_view s) {
  auto end = s.find_first_of("\r\n");
  return end == std::string_view::npos ? s : s.substr(0, end);
}

SecretString read_pin_file(const std::string& path) {
  if (path.empty()) throw HsmError("PIN file: no path configured");
  // O_NOFOLLOW: a symlink swapped in for the PIN file is refused, not followed.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    throw HsmError("cannot open PIN file " + path + ": " + std::generic_category().message(e));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    throw HsmError("cannot stat PIN file " + path + ": " + std::generic_category().message(e));
  }
  if (!S_ISREG(st.st_mode)) throw HsmError("PIN file " + path + " is not a regular file");
  // Checked on the open descriptor, so the file cannot be swapped after the check.
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw HsmError("PIN file " + path + " has mode " + mode +
                   ": it must not be accessible by group or others (chmod 600)");
  }
  if (st.st_size > static_cast<off_t>(kMaxPinFile))
    throw HsmError("PIN file " + path + " is too large to be a PIN file");

  char buf[kMaxPinFile + 1];
  std::size_t n = 0;
  for (;;) {
    ssize_t r = ::read(fd, buf + n, sizeof buf - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      explicit_bzero(buf, sizeof buf);
      throw HsmError("cannot read PIN file " + path + ": " + std::generic_category().message(e));
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
    if (n == sizeof buf) break;
  }
  if (n > kMaxPinFile) {
    explicit_bzero(buf, sizeof buf);
    throw HsmError("PIN file " + path + " is too large to be a PIN file");
  }
  SecretString pin(first_line(std::string_view(buf, n)));
  explicit_bzero(buf, sizeof buf);
  if (pin.empty()) throw HsmError("PIN file " + path + " is empty");
  return pin;
}

// A PIN from the environment is taken out of it at the first read
// (unsetenv, after wiping the value in place): a child process, a core dump of
// the environment block or /proc/<pid>/environ no longer shows it. Later reads
// (re-logins) answer from this process-wide copy, a wiped SecretString.
std::mutex env_pin_mu;
std::map<std::string, SecretString>& env_pins() {
  static std::map<std::string, SecretString> pins;  // guarded by env_pin_mu
  return pins;
}

SecretString read_pin_env(const std::string& name) {
  if (name.empty()) throw HsmError("PIN environment variable: no name configured");
  std::lock_guard lock(env_pin_mu);
  auto& pins = env_pins();
  // NOLINTNEXTLINE(concurrency-mt-unsafe): serialized by env_pin_mu; the first read happens at start-up
  if (char* v = std::getenv(name.c_str()); v != nullptr) {
    SecretString pin(first_line(v));
    explicit_bzero(v, std::strlen(v));
    ::unsetenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): as above
    if (pin.empty()) throw HsmError("PIN environment variable " + name + " is empty");
    pins[name] = SecretString(std::string_view(pin.expose()));
    return pin;
  }
  auto it = pins.find(name);
  if (it == pins.end()) throw HsmError("PIN environment variable " + name + " is not set");
  return SecretString(std::string_view(it->second.expose()));
}

}  // namespace

SecretString read_pin(const PinSource& source) {
  switch (source.kind) {
    case PinSource::Kind::file:
      return read_pin_file(source.location);
    case PinSource::Kind::env:
      return read_pin_env(source.location);
  }
  throw HsmError("PIN source: unknown kind");
}

}  // namespace edge::hsm
