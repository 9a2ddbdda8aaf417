#include "apps/lib/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "base/error.h"

namespace mgl::apps {

std::string RunLock::lock_path(const std::string& folder) { return (std::filesystem::path(folder) / ".lock").string(); }

RunLock::RunLock(const std::string& folder, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  MGL_CHECK(!ec, "cannot create ", what, " folder '", folder, "': ", ec.message());
  const std::string path = lock_path(folder);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MGL_CHECK(fd_ >= 0, "cannot create the lock file '", path, "': ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int reason = errno;
    char pid[32] = {};
    const ssize_t n = ::pread(fd_, pid, sizeof(pid) - 1, 0);
    ::close(fd_);
    fd_ = -1;
    MGL_CHECK(reason == EWOULDBLOCK, "cannot lock '", path, "': ", std::strerror(reason));
    // The pid is missing when the holder is not one of ours (say flock(1)) or has not written it yet.
    const std::string pid_text = n > 0 ? std::string(pid, static_cast<size_t>(n)) : std::string();
    const std::string holder = n > 0 ? "process " + pid_text.substr(0, pid_text.find('\n')) : "another process";
    MGL_FAIL(what, " folder '", folder, "' is in use by ", holder,
             " (one process per folder: wait for it, stop it, or choose another folder)");
  }
  // Ours now: record our pid for the message a second process prints (a stale pid from a killed run is
  // overwritten; the lock, not the file's contents, says who holds the folder).
  const std::string text = std::to_string(::getpid()) + "\n";
  const bool written =
      ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size());
  if (!written) {
    const int reason = errno;
    ::close(fd_);
    MGL_FAIL("cannot write the lock file '", path, "': ", std::strerror(reason));
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (a later run takes it)
}

}  // namespace mgl::apps
