// ConfigStore: generation files with a SHA-256 envelope, written atomically, pruned to the newest N.
#include <edge/mgmt/config_store.h>
#include <edge/mgmt/error.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace edge::mgmt {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPending = "pending.cfg";

[[noreturn]] void fail(const std::string& what) {
  throw MgmtError(ErrorCode::internal, what + ": " + std::generic_category().message(errno));
}

std::string sha256(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw MgmtError(ErrorCode::internal, "SHA-256 failed");
  }
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string file_name(std::uint64_t generation) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "gen-%010llu.cfg", static_cast<unsigned long long>(generation));
  return buf;
}

// The generation number a file name claims, or 0 for anything else.
std::uint64_t generation_of(const fs::path& p) {
  const std::string n = p.filename().string();
  unsigned long long g = 0;
  char tail = 0;
  if (n.size() != 18 || std::sscanf(n.c_str(), "gen-%10llu.cf%c", &g, &tail) != 2 || tail != 'g') return 0;
  return g;
}

std::string envelope_bytes(const v1::StoredGeneration& g) {
  v1::StoreEnvelope env;
  env.set_generation(g.SerializeAsString());
  env.set_sha256(sha256(env.generation()));
  return env.SerializeAsString();
}

// A file reads back only whole and unaltered: anything else is refused (and
// logged), so a torn or corrupted generation is never half-used.
std::optional<v1::StoredGeneration> read_envelope(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream bytes;
  bytes << in.rdbuf();
  v1::StoreEnvelope env;
  v1::StoredGeneration g;
  if (!env.ParseFromString(bytes.str()) || env.sha256() != sha256(env.generation()) ||
      !g.ParseFromString(env.generation())) {
    spdlog::warn("event=config_store_bad_file path={} reason=digest_or_format", path.string());
    return std::nullopt;
  }
  return g;
}

// Generation numbers of the gen files present, newest first.
std::vector<std::uint64_t> generations_on_disk(const fs::path& dir) {
  std::vector<std::uint64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (const auto g = generation_of(e.path()); g != 0) out.push_back(g);
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("open " + dir.string());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail("fsync " + dir.string());
}

void remove_durably(const fs::path& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return;
    fail("unlink " + path.string());
  }
  fsync_dir(path.parent_path());
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail("open " + tmp.string());
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = saved;
      fail("write " + tmp.string());
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = saved;
    fail("fsync " + tmp.string());
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail("rename " + tmp.string());
  }
  // The rename is only durable once the directory entry is.
  fsync_dir(path.parent_path().empty() ? fs::path(".") : path.parent_path());
}

ConfigStore::ConfigStore(std::filesystem::path dir, std::uint32_t keep) : dir_(std::move(dir)), keep_(keep) {
  set_keep(keep);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw MgmtError(ErrorCode::internal, "create " + dir_.string() + ": " + ec.message());
  // Configuration may name key sets and file paths: nobody but the daemon reads it.
  if (::chmod(dir_.c_str(), 0700) != 0) fail("chmod " + dir_.string());
  // A .tmp is a write that never reached its rename: it is not a generation.
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().extension() == ".tmp") fs::remove(e.path(), ec);
  }
}

std::optional<v1::StoredGeneration> ConfigStore::latest() const {
  for (const auto g : generations_on_disk(dir_)) {
    if (auto s = get(g)) return s;
  }
  return std::nullopt;
}

std::optional<v1::StoredGeneration> ConfigStore::get(std::uint64_t generation) const {
  auto g = read_envelope(dir_ / file_name(generation));
  // A file renamed onto another generation's name is not that generation.
  if (g && g->generation() != generation) return std::nullopt;
  return g;
}

std::vector<v1::StoredGeneration> ConfigStore::list() const {
  std::vector<v1::StoredGeneration> out;
  auto gens = generations_on_disk(dir_);
  std::reverse(gens.begin(), gens.end());
  for (const auto g : gens) {
    if (auto s = get(g)) out.push_back(std::move(*s));
  }
  return out;
}

void ConfigStore::commit(const v1::StoredGeneration& g) {
  const auto last = latest();
  const std::uint64_t expected = last ? last->generation() + 1 : std::max<std::uint64_t>(g.generation(), 1);
  if (g.generation() != expected) {
    throw MgmtError(ErrorCode::internal, "commit of generation " + std::to_string(g.generation()) +
                                             " refused: the store expects " + std::to_string(expected));
  }
  write_file_atomically(dir_ / file_name(g.generation()), envelope_bytes(g));
  // Prune by number, corrupted files included: the newest `keep` stay.
  for (const auto old : generations_on_disk(dir_)) {
    if (old + keep_ <= g.generation()) {
      std::error_code ec;
      fs::remove(dir_ / file_name(old), ec);
    }
  }
}

void ConfigStore::write_pending(const v1::StoredGeneration& g) {
  write_file_atomically(dir_ / kPending, envelope_bytes(g));
}

std::optional<v1::StoredGeneration> ConfigStore::pending() const {
  if (!fs::exists(dir_ / kPending)) return std::nullopt;
  return read_envelope(dir_ / kPending);
}

void ConfigStore::confirm_pending() {
  const auto p = pending();
  if (!p) throw MgmtError(ErrorCode::failed_precondition, "no pending generation to confirm");
  // Commit first: a crash between the two steps leaves a pending file whose
  // generation is already committed, which the next start recognises.
  commit(*p);
  remove_durably(dir_ / kPending);
}

void ConfigStore::discard_pending() { remove_durably(dir_ / kPending); }

}  // namespace edge::mgmt
