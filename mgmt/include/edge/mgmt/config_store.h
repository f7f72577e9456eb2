// ConfigStore: generation-numbered configuration files, sealed by a MAC in the HSM, written
// atomically, the last N kept.
#pragma once

#include <edge/mgmt/v1/config.pb.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edge::hsm {
class Hsm;
}

namespace edge::mgmt {

// What authenticates the store's files: in the daemon, the config store key
// in the HSM (hsm::StoreKey: HMAC-SHA256 computed in the HSM, the key never
// leaves it). Methods may block on the HSM and throw MgmtError(unavailable)
// when it cannot answer.
class StoreSeal {
 public:
  virtual ~StoreSeal() = default;
  virtual bool key_exists() = 0;  // throws MgmtError(failed_precondition) for a refused (planted) key
  virtual void create_key() = 0;
  virtual std::string mac(std::string_view bytes) = 0;  // 32 bytes
  virtual bool verify(std::string_view bytes, std::string_view tag) = 0;
};

// The seal of a running appliance: hsm::StoreKey of `hsm` (not owned).
std::unique_ptr<StoreSeal> hsm_store_seal(hsm::Hsm& hsm);

// Why a file of the store is not used.
struct RefusedFile {
  std::string file;              // e.g. "gen-0000000042.cfg"
  std::uint64_t generation = 0;  // the number its name claims (0: pending.cfg)
  std::string reason;            // one line: "seal mismatch: ..."
};

// What a pass over the whole store found.
struct StoreCheck {
  std::uint64_t newest_on_disk = 0;  // the highest gen-N.cfg name, readable or not
  std::uint64_t newest_good = 0;     // the highest generation that reads back and verifies
  std::vector<RefusedFile> refused;  // newest first
  // The newest generation is damaged or forged: the store runs an older one.
  bool newest_refused() const { return newest_on_disk != newest_good; }
};

// Layout of <dir>:
//   gen-0000000042.cfg   a StoreEnvelope: StoredGeneration, its SHA-256, its seal
//   pending.cfg          an applied generation awaiting confirm (confirmed commit)
//   *.tmp                never read; removed at open
// Every write is: write <name>.tmp, fsync, rename, fsync the directory. A
// rename is atomic, so after a crash at any point each file is either the old
// one or the new one. pending.cfg is discarded at open (a confirmed commit
// that was not confirmed before a crash is rolled back).
//
// Integrity. The SHA-256 tells a torn or damaged file. The seal is an
// HMAC-SHA256 computed in the HSM over a domain string, the file's kind
// (generation or pending) and the generation's bytes: whoever edits a file and
// recomputes the SHA-256 still cannot seal it without the HSM. A store opened
// with a seal uses only files whose seal verifies; one opened without (the
// daemon's look at the newest generation for the HSM settings it needs to
// reach the HSM at all) checks the SHA-256 only and must not be written.
//
// Sealing an existing store: adopt_seal() creates the store key when the HSM
// has none and seals the files that carry only a SHA-256 (stores written
// before the seal existed, or a first boot); once the key exists, an
// unsealed file is refused. A store with sealed files and an HSM without the
// key is refused as a whole (another token, or edited HSM settings).
class ConfigStore {
 public:
  // `seal` is not owned; nullptr: SHA-256 only, read-only use.
  ConfigStore(std::filesystem::path dir, std::uint32_t keep = 10, StoreSeal* seal = nullptr);

  const std::filesystem::path& dir() const { return dir_; }

  // See above. Returns the files sealed now (0 when the key already existed).
  // Throws MgmtError(failed_precondition) when the store is sealed but the
  // HSM holds no store key, MgmtError(unavailable) when the HSM cannot answer.
  std::size_t adopt_seal();

  // Reads every file; logs each refused one (event=config_store_bad_file).
  StoreCheck check() const;

  // The newest committed generation that reads back (and verifies); nullopt when none does.
  std::optional<v1::StoredGeneration> latest() const;
  std::optional<v1::StoredGeneration> get(std::uint64_t generation) const;
  // Committed generations that read back, oldest first.
  std::vector<v1::StoredGeneration> list() const;
  // The number the next generation must have: one above every gen file on
  // disk, so a refused newest file is never overwritten (it stays evidence
  // until pruned).
  std::uint64_t next_generation() const;

  // Writes `g` (its generation must be next_generation(), or >= 1 on an empty
  // store) and prunes beyond `keep`. Throws MgmtError(internal) when the write
  // fails and MgmtError(unavailable) when the HSM cannot seal (nothing committed then).
  void commit(const v1::StoredGeneration& g);

  // Confirmed commit: holds `g` as pending; confirm_pending() commits it,
  // discard_pending() drops it.
  void write_pending(const v1::StoredGeneration& g);
  std::optional<v1::StoredGeneration> pending() const;
  void confirm_pending();
  void discard_pending();

  void set_keep(std::uint32_t keep) { keep_ = keep == 0 ? 1 : keep; }

 private:
  std::filesystem::path dir_;
  std::uint32_t keep_;
  StoreSeal* seal_;
};

// Atomic whole-file write (tmp, fsync, rename, fsync dir). Throws MgmtError(internal).
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace edge::mgmt
