// POSIX file helpers: full reads and writes with EINTR handled, fsync of files and directories.
#include "fs_util.h"

#include <edge/images/bundle.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace edge::images {

namespace fs = std::filesystem;

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void throw_errno(const std::string& what, int err) {
  throw ImageError(what + ": " + std::generic_category().message(err));
}

Fd open_read(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open " + path.string(), errno);
  return fd;
}

void pread_exact(int fd, void* buf, std::size_t size, std::uint64_t offset, const fs::path& path) {
  auto* p = static_cast<char*>(buf);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + path.string(), errno);
    if (n == 0) throw ImageError("unexpected end of file in " + path.string() + " (changed while reading?)");
    done += static_cast<std::size_t>(n);
  }
}

void write_all(int fd, const void* data, std::size_t size, const fs::path& path) {
  const auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, p + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno("cannot write " + path.string(), n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
}

void fsync_fd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) throw_errno("cannot fsync " + path.string(), errno);
}

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open directory " + dir.string(), errno);
  fsync_fd(fd.get(), dir);
}

void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode) {
  const fs::path tmp =
      path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()));
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!fd) throw_errno("cannot create " + tmp.string(), errno);
    try {
      if (::fchmod(fd.get(), mode) != 0) throw_errno("cannot chmod " + tmp.string(), errno);
      write_all(fd.get(), content.data(), content.size(), tmp);
      fsync_fd(fd.get(), tmp);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw_errno("cannot rename " + tmp.string() + " to " + path.string(), e);
  }
  fsync_dir(path.parent_path());
}

std::string read_small_file(const fs::path& path, std::size_t max) {
  Fd fd = open_read(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path.string(), errno);
  if (!S_ISREG(st.st_mode)) throw ImageError(path.string() + " is not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > max) {
    throw ImageError(path.string() + " is too large (" + std::to_string(st.st_size) + " bytes, at most " +
                     std::to_string(max) + ")");
  }
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  pread_exact(fd.get(), out.data(), out.size(), 0, path);
  return out;
}

}  // namespace edge::images
