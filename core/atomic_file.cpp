#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "base/error.h"

namespace mgl {

AtomicFile::AtomicFile(const std::string& path) : path_(path), temporary_(path + ".tmp") {
  file_ = std::fopen(temporary_.c_str(), "wb");
  MGL_CHECK(file_, "cannot write '", temporary_, "': ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (!file_) return;
  std::fclose(file_);
  std::remove(temporary_.c_str());
}

void AtomicFile::fail(const std::string& what) {
  const std::string reason = std::strerror(errno);
  if (file_) std::fclose(std::exchange(file_, nullptr));
  std::remove(temporary_.c_str());
  MGL_FAIL(what, ": ", reason);
}

void AtomicFile::write(const void* data, size_t bytes) {
  if (std::fwrite(data, 1, bytes, file_) != bytes) fail("cannot write '" + temporary_ + "'");
}

void AtomicFile::commit() {
  // fflush and fsync too: a full disk often shows only there (the bytes so far sat in buffers), and the rename
  // below must not publish bytes that are not yet on the disk.
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) fail("cannot write '" + temporary_ + "'");
  if (std::fclose(std::exchange(file_, nullptr)) != 0) fail("cannot write '" + temporary_ + "'");
  if (std::rename(temporary_.c_str(), path_.c_str()) != 0)
    fail("cannot rename '" + temporary_ + "' to '" + path_ + "'");
}

void sync_file_to_disk(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MGL_CHECK(fd >= 0, "cannot open '", path, "' to sync it: ", std::strerror(errno));
  const bool synced = ::fsync(fd) == 0;
  const int reason = errno;
  ::close(fd);
  MGL_CHECK(synced, "cannot sync '", path, "' to the disk: ", std::strerror(reason));
}

}  // namespace mgl
