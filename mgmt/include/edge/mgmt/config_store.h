// ConfigStore: generation-numbered configuration files, written atomically, the last N kept.
#pragma once

#include <edge/mgmt/v1/config.pb.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace edge::mgmt {

// Layout of <dir>:
//   gen-0000000042.cfg   a StoreEnvelope (StoredGeneration + SHA-256)
//   pending.cfg          an applied generation awaiting confirm (confirmed commit)
//   *.tmp                never read; removed at open
// Every write is: write <name>.tmp, fsync, rename, fsync the directory. A
// rename is atomic, so after a crash at any point each file is either the old
// one or the new one. The committed generation is the newest gen file that
// reads back with a matching digest; pending.cfg is discarded at open (a
// confirmed commit that was not confirmed before a crash is rolled back).
class ConfigStore {
 public:
  ConfigStore(std::filesystem::path dir, std::uint32_t keep = 10);

  const std::filesystem::path& dir() const { return dir_; }

  // The newest committed generation; nullopt on first boot.
  std::optional<v1::StoredGeneration> latest() const;
  std::optional<v1::StoredGeneration> get(std::uint64_t generation) const;
  // Committed generations still kept, oldest first.
  std::vector<v1::StoredGeneration> list() const;

  // Writes `g` (its generation must be latest+1) and prunes beyond `keep`.
  // Throws MgmtError(internal) when the write fails (nothing committed then).
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
};

// Atomic whole-file write (tmp, fsync, rename, fsync dir). Throws MgmtError(internal).
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace edge::mgmt
