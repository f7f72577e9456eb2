// A/B slot store: atomic state file, staged install, boot counter, commit and fallback.
#include <edge/images/slots.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>
#include <vector>

#include "fs_util.h"

namespace edge::images {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxStateFile = 4096;
constexpr std::size_t kChunk = std::size_t{64} * 1024;
constexpr std::uint32_t kMaxTries = 100;

// Tests kill a real install at chosen moments: with EDGE_IMAGE_STOP_AT=<point>
// the process stops itself (SIGSTOP) there, and the test sends SIGKILL. The
// points are the boundaries between the durable steps of install().
void stop_point(const char* name) {
  const char* want = std::getenv("EDGE_IMAGE_STOP_AT");
  if (want != nullptr && std::strcmp(want, name) == 0) ::raise(SIGSTOP);
}

// One state-changing command per root at a time; released by the kernel when
// the process dies, so a killed install never leaves the root locked.
class RootLock {
 public:
  explicit RootLock(const fs::path& root) {
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) throw ImageError("cannot create " + root.string() + ": " + ec.message());
    const fs::path path = root / ".lock";
    fd_ = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd_) throw_errno("cannot open " + path.string(), errno);
    while (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno == EWOULDBLOCK) throw ImageError("another edge-image command is working on " + root.string());
      throw_errno("cannot lock " + path.string(), errno);
    }
  }

 private:
  Fd fd_;
};

char slot_name(std::string_view s, bool allow_none, std::size_t line) {
  if (s == "a" || s == "b") return s[0];
  if (allow_none && s == "-") return 0;
  throw ImageError("slot state line " + std::to_string(line) + ": bad slot '" + std::string(s) + "'");
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    const std::size_t j = std::min(line.find(' ', i), line.size());
    out.push_back(line.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

void remove_tree(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw ImageError("cannot remove " + p.string() + ": " + ec.message());
}

// Writes the bundle's files into `dir` (which must not exist), checking every
// hash again while copying: the bundle may have been replaced since verify.
void unpack(const VerifiedBundle& b, const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0) throw_errno("cannot create " + dir.string(), errno);
  Fd in = open_read(b.path);
  std::vector<std::uint8_t> buf(kChunk);
  std::set<fs::path> dirs{dir};
  std::uint64_t offset = b.payload_offset;
  bool first = true;
  for (const FileEntry& f : b.manifest.files) {
    const fs::path target = dir / f.path;
    for (fs::path p = target.parent_path(); p != dir && !dirs.count(p); p = p.parent_path()) dirs.insert(p);
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw ImageError("cannot create " + target.parent_path().string() + ": " + ec.message());
    Fd out(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out) throw_errno("cannot create " + target.string(), errno);
    Sha256Stream hash;
    for (std::uint64_t left = f.size; left > 0;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
      pread_exact(in.get(), buf.data(), n, offset, b.path);
      hash.update(buf.data(), n);
      write_all(out.get(), buf.data(), n, target);
      offset += n;
      left -= n;
    }
    if (hash.finish() != f.sha256) {
      throw ImageError("file " + f.path + ": bundle changed since it was verified (SHA-256 mismatch)");
    }
    if (::fchmod(out.get(), f.mode) != 0) throw_errno("cannot chmod " + target.string(), errno);
    fsync_fd(out.get(), target);
    if (first) stop_point("unpacking");
    first = false;
  }
  for (const fs::path& d : dirs) fsync_dir(d);
}

// One line per install in <root>/audit.log, appended and fsynced before the
// install changes anything: who (uid), what, and whether the rollback index
// was overridden. A root whose audit log cannot be written takes no install.
void audit(const fs::path& root, const InstallResult& r, const SlotsState& s, const InstallOptions& o) {
  const fs::path path = root / "audit.log";
  Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw_errno("cannot open the audit log " + path.string(), errno);
  const std::string line =
      iso_utc(static_cast<std::int64_t>(std::time(nullptr))) +
      " action=install uid=" + std::to_string(::getuid()) + " slot=" + std::string(1, r.slot) +
      " version=" + r.version + " rollback=" + std::to_string(r.rollback) +
      " stored_rollback=" + std::to_string(s.rollback) + " force=" + (o.force ? "yes" : "no") +
      " downgrade=" + (r.downgrade ? "allowed" : "no") + " trust=\"" +
      (o.trust.empty() ? std::string("unknown") : o.trust) + "\"\n";
  write_all(fd.get(), line.data(), line.size(), path);
  fsync_fd(fd.get(), path);
}

}  // namespace

const char* to_string(SlotState s) noexcept {
  switch (s) {
    case SlotState::empty:
      return "empty";
    case SlotState::trying:
      return "trying";
    case SlotState::good:
      return "good";
    case SlotState::bad:
      return "bad";
  }
  return "?";
}

std::string serialize_state(const SlotsState& s) {
  auto name = [](char c) { return c == 0 ? std::string("-") : std::string(1, c); };
  std::string out = "edge-slots 2\nactive " + name(s.active) + "\nbooted " + name(s.booted) + "\nrollback " +
                    std::to_string(s.rollback) + "\n";
  for (const Slot* sl : {&s.a, &s.b}) {
    out += "slot " + name(sl->name) + " " + to_string(sl->state) + " " +
           (sl->version.empty() ? std::string("-") : sl->version) + " " + std::to_string(sl->tries) + " " +
           std::to_string(sl->rollback) + "\n";
  }
  return out;
}

namespace {

// A decimal 0..4294967295 spelt one way ("0", "7", never "07").
bool state_number(std::string_view w, std::uint32_t& out) {
  if (w.empty() || w.size() > 10 || (w.size() > 1 && w[0] == '0') ||
      w.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  const std::uint64_t v = std::stoull(std::string(w));
  if (v > 0xffffffffULL) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

}  // namespace

SlotsState parse_state(std::string_view text) {
  if (text.empty() || text.back() != '\n') throw ImageError("slot state file is truncated");
  std::vector<std::string_view> lines;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t j = text.find('\n', i);
    lines.push_back(text.substr(i, j - i));
    i = j + 1;
  }
  // Format 1 had no rollback indices: its slots read as index 0.
  const bool v1 = !lines.empty() && lines[0] == "edge-slots 1";
  if (lines.size() != (v1 ? 5u : 6u) || (!v1 && lines[0] != "edge-slots 2"))
    throw ImageError("slot state file has an unknown format");
  SlotsState s;
  const auto active = words(lines[1]), booted = words(lines[2]);
  if (active.size() != 2 || active[0] != "active") throw ImageError("slot state line 2: expected 'active'");
  if (booted.size() != 2 || booted[0] != "booted") throw ImageError("slot state line 3: expected 'booted'");
  s.active = slot_name(active[1], true, 2);
  s.booted = slot_name(booted[1], true, 3);
  std::size_t first_slot = 3;
  if (!v1) {
    const auto rb = words(lines[3]);
    if (rb.size() != 2 || rb[0] != "rollback" || !state_number(rb[1], s.rollback))
      throw ImageError("slot state line 4: expected 'rollback N'");
    first_slot = 4;
  }
  for (std::size_t i = first_slot; i < first_slot + 2; ++i) {
    const auto w = words(lines[i]);
    if (w.size() != (v1 ? 5u : 6u) || w[0] != "slot")
      throw ImageError("slot state line " + std::to_string(i + 1) + ": bad slot line");
    Slot& sl = s.slot(slot_name(w[1], false, i + 1));
    if (sl.name != (i == first_slot ? 'a' : 'b')) throw ImageError("slot state: slots out of order");
    bool known = false;
    for (SlotState st : {SlotState::empty, SlotState::trying, SlotState::good, SlotState::bad}) {
      if (w[2] == to_string(st)) {
        sl.state = st;
        known = true;
      }
    }
    if (!known) throw ImageError("slot state line " + std::to_string(i + 1) + ": unknown state");
    sl.version = w[3] == "-" ? std::string() : std::string(w[3]);
    if (sl.state != SlotState::empty && !valid_version(sl.version))
      throw ImageError("slot state line " + std::to_string(i + 1) + ": bad version");
    const std::string tries(w[4]);
    if (tries.empty() || tries.size() > 3 || tries.find_first_not_of("0123456789") != std::string::npos)
      throw ImageError("slot state line " + std::to_string(i + 1) + ": bad tries");
    sl.tries = static_cast<std::uint32_t>(std::stoul(tries));
    if (!v1 && !state_number(w[5], sl.rollback))
      throw ImageError("slot state line " + std::to_string(i + 1) + ": bad rollback index");
  }
  if (s.active != 0 && s.slot(s.active).state != SlotState::good)
    throw ImageError("slot state: the active slot is not good");
  return s;
}

SlotStore::SlotStore(const fs::path& root) : root_(fs::absolute(root).lexically_normal()) {}

fs::path SlotStore::slot_dir(char name) const { return root_ / "slots" / std::string(1, name); }

SlotsState SlotStore::load() const {
  const fs::path path = root_ / "slots.state";
  if (!fs::exists(path)) return SlotsState{};
  return parse_state(read_small_file(path, kMaxStateFile));
}

void SlotStore::save(const SlotsState& s) const {
  write_file_atomic(root_ / "slots.state", serialize_state(s), 0644);
}

SlotsState SlotStore::status() const { return load(); }

InstallResult SlotStore::install(const VerifiedBundle& bundle, const InstallOptions& options) {
  if (options.tries == 0 || options.tries > kMaxTries)
    throw ImageError("tries must be 1.." + std::to_string(kMaxTries));
  RootLock lock(root_);
  SlotsState s = load();
  const char target = s.active == 'a' ? 'b' : 'a';
  Slot& t = s.slot(target);
  if (s.booted == target && t.state == SlotState::trying) {
    throw ImageError(
        std::string("slot ") + target +
        " is on trial (booted, not committed): run mark-good, or boot again to fall back, first");
  }
  InstallResult result{target, bundle.manifest.version, {}, bundle.manifest.rollback, s.rollback, false};
  // The rollback index first: --force (a version downgrade) never gets below it.
  if (bundle.manifest.rollback < s.rollback) {
    if (!options.allow_downgrade) {
      throw ImageError("refusing rollback index " + std::to_string(bundle.manifest.rollback) + " (version " +
                       bundle.manifest.version + "): below the stored rollback index " +
                       std::to_string(s.rollback) +
                       " of this root; --force does not override it, --allow-downgrade does (audited)");
    }
    result.downgrade = true;
  }
  if (s.active != 0) {
    const Slot& act = s.slot(s.active);
    result.replaced_version = act.version;
    if (!options.force && !options.allow_downgrade &&
        compare_versions(bundle.manifest.version, act.version) < 0) {
      throw ImageError("refusing downgrade from " + act.version + " (slot " + std::string(1, s.active) +
                       ") to " + bundle.manifest.version + "; use --force");
    }
  }
  audit(root_, result, s, options);

  // 1. The target can never be booted again until step 4 finishes.
  t = Slot{target, SlotState::empty, {}, 0, 0};
  if (s.booted == target) s.booted = 0;
  save(s);
  stop_point("marked-empty");

  // 2. Files into a staging directory, leftovers of an interrupted run first.
  const fs::path slots = root_ / "slots";
  const fs::path dir = slot_dir(target);
  const fs::path staging = slots / (std::string(1, target) + ".new");
  const fs::path old = slots / (std::string(1, target) + ".old");
  std::error_code ec;
  fs::create_directories(slots, ec);
  if (ec) throw ImageError("cannot create " + slots.string() + ": " + ec.message());
  remove_tree(staging);
  remove_tree(old);
  try {
    unpack(bundle, staging);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
  stop_point("staged");

  // 3. Staging becomes the slot directory.
  if (fs::exists(dir) && ::rename(dir.c_str(), old.c_str()) != 0)
    throw_errno("cannot rename " + dir.string(), errno);
  if (::rename(staging.c_str(), dir.c_str()) != 0) throw_errno("cannot rename " + staging.string(), errno);
  fsync_dir(slots);
  remove_tree(old);
  stop_point("swapped");

  // 4. The one atomic step that makes the slot bootable.
  t = Slot{target, SlotState::trying, bundle.manifest.version, options.tries, bundle.manifest.rollback};
  save(s);
  return result;
}

BootResult SlotStore::boot() {
  RootLock lock(root_);
  SlotsState s = load();
  BootResult r;
  for (char name : {'a', 'b'}) {
    Slot& sl = s.slot(name);
    if (sl.state != SlotState::trying) continue;
    if (sl.tries > 0 && fs::is_directory(slot_dir(name))) {
      --sl.tries;
      s.booted = name;
      save(s);
      r.slot = name;
      r.info = sl;
      return r;
    }
    // Out of tries without a mark-good: the new software never proved itself.
    sl.state = SlotState::bad;
    r.fell_back = true;
    r.failed_slot = name;
  }
  if (s.active == 0 || !fs::is_directory(slot_dir(s.active))) {
    if (r.fell_back) save(s);
    throw ImageError("no bootable slot under " + root_.string() +
                     (r.fell_back ? " (the trial slot ran out of tries)" : ""));
  }
  s.booted = s.active;
  save(s);
  r.slot = s.active;
  r.info = s.slot(s.active);
  return r;
}

char SlotStore::mark_good() {
  RootLock lock(root_);
  SlotsState s = load();
  if (s.booted == 0) throw ImageError("no slot has been booted yet (run boot first)");
  Slot& sl = s.slot(s.booted);
  if (sl.state == SlotState::good) return s.booted;
  if (sl.state != SlotState::trying) {
    throw ImageError(std::string("booted slot ") + s.booted + " is " + to_string(sl.state) +
                     ", cannot mark it good");
  }
  sl.state = SlotState::good;
  sl.tries = 0;
  s.active = s.booted;
  s.rollback = std::max(s.rollback, sl.rollback);
  save(s);
  return s.booted;
}

}  // namespace edge::images
