// Small POSIX file helpers of edge_images: owned descriptors, full reads/writes, atomic replace (private).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace edge::images {

class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd();
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Throws ImageError "<what>: <strerror>".
[[noreturn]] void throw_errno(const std::string& what, int err);

Fd open_read(const std::filesystem::path& path);
// Exactly `size` bytes at `offset`, or ImageError ("unexpected end of file" when short).
void pread_exact(int fd, void* buf, std::size_t size, std::uint64_t offset,
                 const std::filesystem::path& path);
void write_all(int fd, const void* data, std::size_t size, const std::filesystem::path& path);
void fsync_fd(int fd, const std::filesystem::path& path);
void fsync_dir(const std::filesystem::path& dir);

// Replaces `path` with `content` atomically: temp file in the same directory,
// fsync, rename, fsync of the directory. Readers see the old or the new file, whole.
void write_file_atomic(const std::filesystem::path& path, std::string_view content, mode_t mode);

// A whole small file, refused when larger than `max` (never allocates more).
std::string read_small_file(const std::filesystem::path& path, std::size_t max);

}  // namespace edge::images
