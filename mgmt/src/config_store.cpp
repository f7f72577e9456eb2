// ConfigStore: generation files with a SHA-256 and an HSM seal, written atomically, pruned to the newest N.
#include <edge/hsm/error.h>
#include <edge/hsm/store_key.h>
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

// What a seal covers besides the generation's bytes: the format and the file's
// kind, so a sealed pending.cfg renamed to a gen file (an unconfirmed change
// made committed) does not verify.
enum class Kind { generation, pending };
std::string sealed_bytes(Kind kind, std::string_view generation) {
  std::string out =
      kind == Kind::generation ? "edge-config-store/1 generation" : "edge-config-store/1 pending";
  out.push_back('\0');
  out.append(generation);
  return out;
}

// An HSM that cannot answer is `unavailable`; a refused (planted) key is
// whatever the caller says (a precondition of the store, not a passing fault).
template <class F>
auto call(F&& f, ErrorCode refused) -> decltype(f()) {
  try {
    return f();
  } catch (const hsm::StoreKeyRefused& e) {
    throw MgmtError(refused, std::string("config store key: ") + e.what());
  } catch (const std::exception& e) {
    throw MgmtError(ErrorCode::unavailable, std::string("config store key: ") + e.what());
  }
}

class HsmSeal final : public StoreSeal {
 public:
  explicit HsmSeal(hsm::Hsm& h) : key_(h) {}
  bool key_exists() override {
    return call([&] { return key_.exists(); }, ErrorCode::failed_precondition);
  }
  void create_key() override {
    call(
        [&] {
          key_.create();
          return true;
        },
        ErrorCode::unavailable);
  }
  std::string mac(std::string_view bytes) override {
    const hsm::MacTag t = call([&] { return key_.mac(as_span(bytes)); }, ErrorCode::unavailable);
    return std::string(reinterpret_cast<const char*>(t.data()), t.size());
  }
  bool verify(std::string_view bytes, std::string_view tag) override {
    return call([&] { return key_.verify(as_span(bytes), as_span(tag)); }, ErrorCode::unavailable);
  }

 private:
  static std::span<const std::uint8_t> as_span(std::string_view v) {
    return {reinterpret_cast<const std::uint8_t*>(v.data()), v.size()};
  }
  hsm::StoreKey key_;
};

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

std::string envelope_bytes(StoreSeal* seal, Kind kind, const v1::StoredGeneration& g) {
  v1::StoreEnvelope env;
  env.set_generation(g.SerializeAsString());
  env.set_sha256(sha256(env.generation()));
  if (seal != nullptr) env.set_hsm_seal(seal->mac(sealed_bytes(kind, env.generation())));
  return env.SerializeAsString();
}

std::optional<std::string> slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// One file, read: the generation, or why not (`why` set, nullopt returned).
struct Read {
  std::optional<v1::StoredGeneration> gen;
  std::string why;
  bool sealed = false;  // carries a seal (verified or not)
};

Read read_envelope(StoreSeal* seal, Kind kind, const fs::path& path) {
  Read r;
  const auto bytes = slurp(path);
  if (!bytes) {
    r.why = "unreadable";
    return r;
  }
  v1::StoreEnvelope env;
  if (!env.ParseFromString(*bytes)) {
    r.why = "not a store file (format)";
    return r;
  }
  r.sealed = !env.hsm_seal().empty();
  if (env.sha256() != sha256(env.generation())) {
    r.why = "digest mismatch: the file is torn or damaged";
    return r;
  }
  if (seal != nullptr) {
    if (!r.sealed) {
      r.why = "not sealed: written without the HSM's config store key (an edit, or a file copied in)";
      return r;
    }
    if (!seal->verify(sealed_bytes(kind, env.generation()), env.hsm_seal())) {
      r.why =
          "seal mismatch: the file was changed after it was written (its SHA-256 recomputed), or "
          "sealed by another HSM";
      return r;
    }
  }
  v1::StoredGeneration g;
  if (!g.ParseFromString(env.generation())) {
    r.why = "not a generation (format)";
    return r;
  }
  r.gen = std::move(g);
  return r;
}

// A file reads back only whole, unaltered and (with a seal) sealed by this
// HSM: anything else is refused and logged, so a torn, damaged or edited
// generation is never used.
// A file renamed onto another generation's name is not that generation.
Read read_named(StoreSeal* seal, Kind kind, const fs::path& path, std::uint64_t generation) {
  Read r = read_envelope(seal, kind, path);
  if (r.gen && kind == Kind::generation && r.gen->generation() != generation) {
    r.why = "names generation " + std::to_string(r.gen->generation()) + ", not its file's";
    r.gen.reset();
  }
  if (!r.gen) spdlog::warn("event=config_store_bad_file path={} reason=\"{}\"", path.string(), r.why);
  return r;
}

std::optional<v1::StoredGeneration> read_logged(StoreSeal* seal, Kind kind, const fs::path& path,
                                                std::uint64_t generation) {
  return read_named(seal, kind, path, generation).gen;
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

ConfigStore::ConfigStore(std::filesystem::path dir, std::uint32_t keep, StoreSeal* seal)
    : dir_(std::move(dir)), keep_(keep), seal_(seal) {
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
  return read_logged(seal_, Kind::generation, dir_ / file_name(generation), generation);
}

std::uint64_t ConfigStore::next_generation() const {
  const auto gens = generations_on_disk(dir_);
  return gens.empty() ? 1 : gens.front() + 1;
}

std::size_t ConfigStore::adopt_seal() {
  if (seal_ == nullptr) throw MgmtError(ErrorCode::internal, "config store opened without a seal");
  if (seal_->key_exists()) return 0;
  // No key: either a store from before the seal (or a first boot), or a store
  // sealed by a key this HSM does not hold. Only the first may be sealed now:
  // sealing the second would launder whatever its files say.
  std::vector<std::pair<Kind, fs::path>> files;
  for (const auto g : generations_on_disk(dir_)) files.emplace_back(Kind::generation, dir_ / file_name(g));
  if (fs::exists(dir_ / kPending)) files.emplace_back(Kind::pending, dir_ / kPending);
  std::vector<std::pair<Kind, fs::path>> to_seal;
  for (const auto& [kind, path] : files) {
    const Read r = read_envelope(nullptr, kind, path);
    if (r.sealed) {
      throw MgmtError(ErrorCode::failed_precondition,
                      "the config store in " + dir_.string() + " is sealed (" + path.filename().string() +
                          "), but the HSM holds no config store key ('" + std::string(hsm::kStoreKeyLabel) +
                          "'): the token was replaced or the HSM settings of the newest generation were "
                          "edited. Restore the token, or move the store aside and provision again "
                          "(docs/operations.md, \"The config store\")");
    }
    if (r.gen) to_seal.emplace_back(kind, path);
  }
  seal_->create_key();
  // Newest first: a crash half-way leaves the newest sealed and older files
  // refused (reported), never the other way round.
  for (const auto& [kind, path] : to_seal) {
    const Read r = read_envelope(nullptr, kind, path);
    if (r.gen) write_file_atomically(path, envelope_bytes(seal_, kind, *r.gen));
  }
  spdlog::info("event=config_store_sealed dir={} files={} key={}", dir_.string(), to_seal.size(),
               hsm::kStoreKeyLabel);
  return to_seal.size();
}

StoreCheck ConfigStore::check() const {
  StoreCheck c;
  const auto gens = generations_on_disk(dir_);
  if (!gens.empty()) c.newest_on_disk = gens.front();
  for (const auto g : gens) {
    const Read r = read_named(seal_, Kind::generation, dir_ / file_name(g), g);
    if (!r.gen) {
      c.refused.push_back(RefusedFile{file_name(g), g, r.why});
    } else if (c.newest_good == 0) {
      c.newest_good = g;
    }
  }
  if (fs::exists(dir_ / kPending)) {
    const Read r = read_named(seal_, Kind::pending, dir_ / kPending, 0);
    if (!r.gen) c.refused.push_back(RefusedFile{kPending, 0, r.why});
  }
  return c;
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
  const auto gens = generations_on_disk(dir_);
  const std::uint64_t expected = gens.empty() ? std::max<std::uint64_t>(g.generation(), 1) : gens.front() + 1;
  if (g.generation() != expected) {
    throw MgmtError(ErrorCode::internal, "commit of generation " + std::to_string(g.generation()) +
                                             " refused: the store expects " + std::to_string(expected));
  }
  write_file_atomically(dir_ / file_name(g.generation()), envelope_bytes(seal_, Kind::generation, g));
  // Prune by number, corrupted files included: the newest `keep` stay.
  for (const auto old : generations_on_disk(dir_)) {
    if (old + keep_ <= g.generation()) {
      std::error_code ec;
      fs::remove(dir_ / file_name(old), ec);
    }
  }
}

void ConfigStore::write_pending(const v1::StoredGeneration& g) {
  write_file_atomically(dir_ / kPending, envelope_bytes(seal_, Kind::pending, g));
}

std::optional<v1::StoredGeneration> ConfigStore::pending() const {
  if (!fs::exists(dir_ / kPending)) return std::nullopt;
  return read_logged(seal_, Kind::pending, dir_ / kPending, 0);
}

std::unique_ptr<StoreSeal> hsm_store_seal(hsm::Hsm& hsm) { return std::make_unique<HsmSeal>(hsm); }

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
