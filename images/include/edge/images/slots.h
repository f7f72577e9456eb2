// A/B slots: install into the inactive slot, boot selection with a try counter, commit, fallback.
#pragma once

#include <edge/images/bundle.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace edge::images {

// empty: nothing bootable (never installed, or an install is under way or was interrupted)
// trying: installed, not yet committed; boot selects it while tries are left
// good: committed by mark-good (or the fallback slot)
// bad: its tries ran out without a mark-good; never selected again until reinstalled
enum class SlotState : std::uint8_t { empty, trying, good, bad };
const char* to_string(SlotState s) noexcept;

struct Slot {
  char name = 'a';
  SlotState state = SlotState::empty;
  std::string version;         // empty when the slot is empty
  std::uint32_t tries = 0;     // boots left while trying
  std::uint32_t rollback = 0;  // the installed bundle's rollback index (Manifest::rollback)
};

// The whole state of a root, one small text file replaced atomically.
struct SlotsState {
  char active = 0;  // the committed slot ('a' / 'b'), 0 = none yet
  char booted = 0;  // the slot the last boot selected, 0 = none
  // The stored rollback index: the highest index of a slot ever committed
  // (mark-good raises it, nothing lowers it). install refuses a bundle below it.
  std::uint32_t rollback = 0;
  Slot a{'a', SlotState::empty, {}, 0, 0}, b{'b', SlotState::empty, {}, 0, 0};
  Slot& slot(char name) { return name == 'a' ? a : b; }
  const Slot& slot(char name) const { return name == 'a' ? a : b; }
};

struct InstallOptions {
  bool force = false;       // allow a version downgrade (not below the rollback index)
  std::uint32_t tries = 3;  // boots the new slot gets before falling back
  // Allow a bundle below the stored rollback index (and any version
  // downgrade). Separate from force on purpose; every use is written to the
  // audit log (<root>/audit.log) before anything is changed.
  bool allow_downgrade = false;
  // What the bundle was verified with, for the audit log ("keyring
  // /etc/edge/keyring", "development key PATH").
  std::string trust;
};

struct InstallResult {
  char slot = 0;
  std::string version;
  std::string replaced_version;       // of the active slot, for the report
  std::uint32_t rollback = 0;         // the bundle's rollback index
  std::uint32_t stored_rollback = 0;  // the store's rollback index when installing
  bool downgrade = false;             // allowed below the stored rollback index
};

struct BootResult {
  char slot = 0;
  Slot info;
  bool fell_back = false;  // a trying slot ran out of tries on this boot
  char failed_slot = 0;
};

// One root directory:
//   <root>/slots.state   the state (format in docs/firmware.md)
//   <root>/slots/a, b    the installed files of each slot
//   <root>/slots/X.new   staging of an install in progress (removed by the next one)
//   <root>/.lock         flock: one state-changing command at a time
//   <root>/audit.log     one line per install (appended, fsynced), downgrades flagged
// Every state change is written atomically (temp, fsync, rename, fsync dir),
// so a kill at any moment leaves the previous or the next state, never a mix.
class SlotStore {
 public:
  explicit SlotStore(const std::filesystem::path& root);

  // Verified bundle -> inactive slot. Order: the target is marked empty (so it
  // can never be booted half-written), its files are written into X.new and
  // fsynced, X.new replaces X, and only then the state makes it trying.
  // Refuses a downgrade below the active slot's version unless forced, a
  // bundle below the stored rollback index unless allow_downgrade (force does
  // not do it), and a slot that is on trial right now (booted and trying).
  // Appends the install to <root>/audit.log before the first change.
  InstallResult install(const VerifiedBundle& bundle, const InstallOptions& options);
  // What a boot would use, counting the attempt: a trying slot with tries
  // left (tries - 1), else the active slot. Throws when nothing is bootable.
  BootResult boot();
  // Commits the booted slot (trying -> good, becomes active) and raises the
  // stored rollback index to its index. Returns it.
  char mark_good();
  SlotsState status() const;  // state as on disk (empty when never installed)

  std::filesystem::path slot_dir(char name) const;
  const std::filesystem::path& root() const noexcept { return root_; }

 private:
  SlotsState load() const;
  void save(const SlotsState& s) const;

  std::filesystem::path root_;
};

std::string serialize_state(const SlotsState& s);
// Format 2 (written); format 1 (no rollback indices) is still read, as 0.
SlotsState parse_state(std::string_view text);  // strict; throws ImageError

}  // namespace edge::images
