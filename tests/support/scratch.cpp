#include "support/scratch.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <system_error>

namespace mgl::testing {

namespace {

// $MGL_TEST_TMPDIR (CTest sets it: tests/CMakeLists.txt), else the system's temporary directory.
std::filesystem::path temporary_root() {
  const char* chosen = std::getenv("MGL_TEST_TMPDIR");
  return chosen != nullptr && *chosen != '\0' ? std::filesystem::path(chosen) : std::filesystem::temp_directory_path();
}

// The folder, and the process that made it: a forked child that exits normally must not remove its
// parent's folder.
struct ProcessFolder {
  std::filesystem::path path;
  pid_t owner = ::getpid();

  ProcessFolder() {
    const std::filesystem::path root = temporary_root();
    std::filesystem::create_directories(root);  // a test run by hand, outside CTest's fixture that makes it
    std::string pattern = (root / ("mgl_test_" + std::to_string(owner) + "_XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("cannot make a scratch folder from '" + pattern + "': " + std::strerror(errno));
    path = pattern;
  }
  ~ProcessFolder() {
    std::error_code ignored;
    if (::getpid() == owner) std::filesystem::remove_all(path, ignored);
  }
};

void make_empty(const std::filesystem::path& dir) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
}

}  // namespace

const std::filesystem::path& process_scratch() {
  static const ProcessFolder folder;
  return folder.path;
}

std::filesystem::path scratch(const std::string& name) {
  const std::filesystem::path dir = process_scratch() / name;
  make_empty(dir);
  return dir;
}

SharedScratch::SharedScratch(std::shared_ptr<const dist::ParallelState> ps, uint64_t seed)
    : ps_(std::move(ps)), root_(temporary_root() / ("mgl_test_shared_" + std::to_string(seed))) {}

SharedScratch::~SharedScratch() {
  if (std::uncaught_exceptions() > 0) return;
  try {
    ps_->world().on(Device::cpu()).barrier();
  } catch (const std::exception&) {
    return;  // a broken world: the ranks may still be using the folders
  }
  std::error_code ignored;
  if (ps_->world_rank() == 0) std::filesystem::remove_all(root_, ignored);
}

std::filesystem::path SharedScratch::operator()(const std::string& name) const {
  const std::filesystem::path dir = root_ / name;
  if (ps_->world_rank() == 0) make_empty(dir);
  ps_->world().on(Device::cpu()).barrier();
  return dir;
}

}  // namespace mgl::testing
