// RunLock (apps/lib/run_lock.h): a second lock on a held folder is refused naming the folder and the
// holder's pid; the lock is released with its holder, and the file a dead holder leaves behind is taken.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "apps/lib/run_lock.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

namespace {

std::string temp_folder() { return scratch("run_lock").string(); }

}  // namespace

TEST_CASE("a held run folder is refused with its holder's pid, and free again when the holder ends") {
  const std::string folder = temp_folder() + "/run";
  std::optional<RunLock> first;
  first.emplace(folder, "run");  // creates the folder
  REQUIRE(std::filesystem::is_directory(folder));
  const std::string message = error_message([&] { RunLock second(folder, "run"); });
  CHECK(contains(message, "run folder '" + folder + "' is in use by process " + std::to_string(::getpid())));
  first.reset();
  CHECK(std::filesystem::exists(RunLock::lock_path(folder)));  // left behind, but no longer held
  RunLock again(folder, "run");
  std::filesystem::remove_all(std::filesystem::path(folder).parent_path());
}

TEST_CASE("a lock file left by a killed run is stale: the next run takes it") {
  const std::string folder = temp_folder();
  std::filesystem::create_directories(folder);
  std::ofstream(RunLock::lock_path(folder)) << "999999\n";  // a pid that held it once, the lock long gone
  RunLock lock(folder, "run");
  std::ifstream in(RunLock::lock_path(folder));
  std::string pid;
  in >> pid;
  CHECK(pid == std::to_string(::getpid()));
  std::filesystem::remove_all(folder);
}

TEST_CASE("a lock held by another program (no pid written) is refused as held by another process") {
  const std::string folder = temp_folder();
  std::filesystem::create_directories(folder);
  const int fd = ::open(RunLock::lock_path(folder).c_str(), O_RDWR | O_CREAT, 0644);  // as flock(1) does
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  CHECK(contains(error_message([&] { RunLock lock(folder, "data"); }),
                 "data folder '" + folder + "' is in use by another process"));
  ::close(fd);
  std::filesystem::remove_all(folder);
}
