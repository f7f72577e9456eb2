// Lab provisioning: SoftHSM configuration, random PIN files and an initialized token, idempotently.
#include <edge/hsm/error.h>
#include <edge/hsm/lab.h>
#include <edge/hsm/module.h>
#include <edge/hsm/secret.h>
#include <edge/hsm/session.h>
#include <edge/hsm/slot.h>

#include "softhsm_env.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

#ifndef EDGE_SOFTHSM_MODULE
#error "EDGE_SOFTHSM_MODULE must be defined by the build (path of libsofthsm2.so)"
#endif

namespace edge::hsm {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kPinLength = 16;

[[noreturn]] void throw_errno(const std::string& what, int e) {
  throw HsmError(what + ": " + std::generic_category().message(e));
}

class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());
}

// Writes a new file atomically (temp file, fsync, link into place) and never
// replaces an existing one: false when `path` already exists.
bool write_new_file(const fs::path& path, std::string_view content, mode_t mode) {
  fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()));
  ::unlink(tmp.c_str());  // a leftover of an interrupted run of this pid
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (fd.get() < 0) throw_errno("cannot create " + tmp.string(), errno);
  bool ok = ::fchmod(fd.get(), mode) == 0;  // whatever the umask
  std::size_t off = 0;
  while (ok && off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd.get()) == 0;
  int e = errno;
  ::close(fd.release());
  if (!ok) {
    ::unlink(tmp.c_str());
    throw_errno("cannot write " + tmp.string(), e);
  }
  // link(2) fails with EEXIST instead of replacing: an existing file wins.
  int rc = ::link(tmp.c_str(), path.c_str());
  e = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (e == EEXIST) return false;
    throw_errno("cannot create " + path.string(), e);
  }
  fsync_dir(path.parent_path());
  return true;
}

SecretString random_pin() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  constexpr unsigned kAlphabetSize = sizeof kAlphabet - 1;  // 62
  constexpr unsigned kLimit = 256 - 256 % kAlphabetSize;    // rejection sampling: no modulo bias
  Fd fd(::open("/dev/urandom", O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_errno("cannot open /dev/urandom", errno);
  char pin[kPinLength];
  std::size_t n = 0;
  unsigned char buf[64];
  while (n < kPinLength) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      explicit_bzero(pin, sizeof pin);
      throw HsmError("cannot read /dev/urandom");
    }
    for (ssize_t i = 0; i < r && n < kPinLength; ++i) {
      if (buf[i] < kLimit) pin[n++] = kAlphabet[buf[i] % kAlphabetSize];
    }
  }
  explicit_bzero(buf, sizeof buf);
  SecretString out(std::string_view(pin, sizeof pin));
  explicit_bzero(pin, sizeof pin);
  return out;
}

// The PIN in `path`, created first when the file does not exist.
SecretString ensure_pin_file(const fs::path& path, bool& created) {
  if (!fs::exists(path)) {
    SecretString pin = random_pin();
    if (write_new_file(path, pin.expose(), 0600)) {
      created = true;
      return pin;
    }
    // Somebody else created it meanwhile: theirs wins, read it.
  }
  return read_pin(PinSource{PinSource::Kind::file, path.string()});
}

void make_private_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw HsmError("cannot create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
}

std::string softhsm_conf_text(const LabPaths& p) {
  return "# SoftHSM2 configuration of the edge lab token (written by edge-hsm init-lab-token).\n"
         "directories.tokendir = " +
         p.tokens_dir.string() +
         "\n"
         "objectstore.backend = file\n"
         "log.level = ERROR\n"
         "slots.removable = false\n";
}

struct Found {
  int count = 0;
  CK_SLOT_ID id = 0;
  TokenInfo info;
};

Found find_label(const Module& m, std::string_view label) {
  Found f;
  for (CK_SLOT_ID id : Slot::list(m, true)) {
    TokenInfo t = Slot(m, id).token_info();
    if (t.initialized() && t.label == label) {
      ++f.count;
      f.id = id;
      f.info = std::move(t);
    }
  }
  return f;
}

void set_user_pin(const Module& m, CK_SLOT_ID slot_id, const SecretString& so_pin,
                  const SecretString& user_pin) {
  Slot slot(m, slot_id);
  Session s(slot, true);
  s.login(CKU_SO, so_pin);
  s.init_pin(user_pin);
  s.logout();
}

}  // namespace

LabPaths::LabPaths(const fs::path& dir)
    : state_dir(fs::absolute(dir).lexically_normal()),
      hsm_dir(state_dir / "hsm"),
      softhsm_conf(hsm_dir / "softhsm2.conf"),
      tokens_dir(hsm_dir / "tokens"),
      user_pin(hsm_dir / "user-pin"),
      so_pin(hsm_dir / "so-pin") {}

fs::path default_state_dir() {
  const char* v = std::getenv("EDGE_STATE_DIR");
  return (v != nullptr && *v != '\0') ? fs::path(v) : fs::path("var");
}

LabToken provision_lab_token(const fs::path& state_dir, std::string_view label) {
  if (label.empty() || label.size() > 32) throw HsmError("token label must be 1..32 bytes");
  LabToken out{LabPaths(state_dir), std::string(label), {}, false, false};
  const LabPaths& p = out.paths;
  make_private_dir(p.hsm_dir);
  make_private_dir(p.tokens_dir);
  write_new_file(p.softhsm_conf, softhsm_conf_text(p), 0600);

  // Two provisioning runs at once would each initialize a token with the label.
  const fs::path lock_path = p.hsm_dir / ".provision.lock";
  Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (lock.get() < 0) throw_errno("cannot open " + lock_path.string(), errno);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_errno("cannot lock " + lock_path.string(), errno);
  }

  detail::export_softhsm2_conf(EDGE_SOFTHSM_MODULE, p.softhsm_conf.string());
  Module m(EDGE_SOFTHSM_MODULE);

  Found found = find_label(m, label);
  if (found.count > 1)
    throw HsmError(std::to_string(found.count) + " tokens are labelled '" + out.label + "'");
  if (found.count == 1 && found.info.user_pin_initialized()) {
    if (!fs::exists(p.user_pin)) {
      throw HsmError("token '" + out.label + "' exists but its PIN file " + p.user_pin.string() +
                     " is missing; the PIN cannot be recovered (remove " + p.tokens_dir.string() +
                     " to start over)");
    }
    out.serial = found.info.serial;
    return out;
  }

  if (found.count == 1) {
    // Initialized by an interrupted run that never set the user PIN.
    if (!fs::exists(p.so_pin)) {
      throw HsmError("token '" + out.label + "' has no user PIN and its SO PIN file " + p.so_pin.string() +
                     " is missing");
    }
    SecretString so = read_pin(PinSource{PinSource::Kind::file, p.so_pin.string()});
    SecretString user = ensure_pin_file(p.user_pin, out.pins_created);
    set_user_pin(m, found.id, so, user);
    out.serial = found.info.serial;
    return out;
  }

  SecretString so = ensure_pin_file(p.so_pin, out.pins_created);
  SecretString user = ensure_pin_file(p.user_pin, out.pins_created);
  {
    Slot free_slot = find_uninitialized_slot(m);
    free_slot.init_token(so, label);
  }
  // SoftHSM moves an initialized token to a new slot id: find it by label.
  found = find_label(m, label);
  if (found.count != 1) throw HsmError("token '" + out.label + "' not found after C_InitToken");
  set_user_pin(m, found.id, so, user);
  {
    // Prove the user PIN works before reporting success.
    Slot slot(m, found.id);
    Session s(slot, false);
    s.login(CKU_USER, user);
    s.logout();
  }
  out.serial = found.info.serial;
  out.token_created = true;
  return out;
}

HsmConfig lab_hsm_config(const fs::path& state_dir, std::string_view label) {
  LabPaths p(state_dir);
  HsmConfig c;
  c.module_path = EDGE_SOFTHSM_MODULE;
  c.token.label = std::string(label);
  c.pin = PinSource{PinSource::Kind::file, p.user_pin.string()};
  c.softhsm2_conf = p.softhsm_conf.string();
  return c;
}

HsmConfig tool_hsm_config(const ToolHsmOptions& o) {
  HsmConfig c;
  if (!o.module) {
    const fs::path state = o.state_dir ? fs::path(*o.state_dir) : default_state_dir();
    c = lab_hsm_config(state, o.token ? *o.token : std::string(kLabTokenLabel));
    if (!fs::exists(c.softhsm2_conf)) {
      throw HsmError("no lab token under " + LabPaths(state).hsm_dir.string() +
                     ": run 'edge-hsm init-lab-token' first, or give --module/--token/--pin-file");
    }
  } else {
    c.module_path = *o.module;
    if (o.token) c.token.label = *o.token;
    if (!o.pin_file && !o.pin_env) throw std::invalid_argument("--module needs --pin-file or --pin-env");
    if (!o.token && !o.token_uri) throw std::invalid_argument("--module needs --token or --token-uri");
  }
  if (o.token_uri) c.token.uri = *o.token_uri;
  if (o.pin_file && o.pin_env) throw std::invalid_argument("give either --pin-file or --pin-env, not both");
  if (o.pin_file) c.pin = PinSource{PinSource::Kind::file, *o.pin_file};
  if (o.pin_env) c.pin = PinSource{PinSource::Kind::env, *o.pin_env};
  return c;
}

}  // namespace edge::hsm
