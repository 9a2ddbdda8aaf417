// AtomicFile (core/atomic_file.h): the bytes appear under the final name only when committed, whole; a
// failure names the file and the OS reason and leaves the old file and no temporary behind.
#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_atomically(const fs::path& path, const std::string& text) {
  AtomicFile file(path.string());
  file.write(text.data(), text.size());
  file.commit();
}

}  // namespace

TEST_CASE("atomic file: committed bytes replace the file whole", "[core][atomic_file]") {
  const fs::path dir = scratch("atomic");
  const fs::path path = dir / "out.txt";
  write_atomically(path, "first");
  CHECK(read_text(path) == "first");
  {
    AtomicFile file(path.string());
    file.write("sec", 3);
    file.write("ond", 3);
    CHECK(read_text(path) == "first");  // nothing under the final name before commit()
    CHECK(fs::exists(dir / "out.txt.tmp"));
    file.commit();
  }
  CHECK(read_text(path) == "second");
  CHECK_FALSE(fs::exists(dir / "out.txt.tmp"));
  write_atomically(dir / "empty.txt", "");
  CHECK(fs::file_size(dir / "empty.txt") == 0);
  fs::remove_all(dir);
}

TEST_CASE("atomic file: a failure names the OS reason and keeps the old file", "[core][atomic_file]") {
  const fs::path dir = scratch("atomic");
  const fs::path path = dir / "out.txt";
  write_atomically(path, "old");

  // Abandoned (an exception while the bytes were being made): the temporary file goes, the old file stays.
  {
    AtomicFile file(path.string());
    file.write("new", 3);
  }
  CHECK(read_text(path) == "old");
  CHECK_FALSE(fs::exists(dir / "out.txt.tmp"));

  // A full disk: the temporary file is /dev/full, where every write fails with ENOSPC (shown at the flush).
  fs::create_symlink("/dev/full", dir / "out.txt.tmp");
  std::string message = error_message([&] { write_atomically(path, "new"); });
  INFO(message);
  CHECK(contains(message, "cannot write '" + (dir / "out.txt.tmp").string() + "': No space left on device"));
  CHECK(read_text(path) == "old");
  CHECK_FALSE(fs::exists(fs::symlink_status(dir / "out.txt.tmp")));

  // A folder that does not exist, and a final name that is a folder.
  message = error_message([&] { write_atomically(dir / "missing" / "x.txt", "x"); });
  CHECK(contains(message, "/missing/x.txt.tmp': No such file or directory"));
  fs::create_directories(dir / "folder");
  message = error_message([&] { write_atomically(dir / "folder", "x"); });
  CHECK(contains(message, "cannot rename '" + (dir / "folder.tmp").string() + "' to '" + (dir / "folder").string()));
  CHECK(contains(message, "Is a directory"));
  CHECK_FALSE(fs::exists(dir / "folder.tmp"));

  CHECK(contains(error_message([&] { sync_file_to_disk((dir / "absent").string()); }), "No such file or directory"));
  fs::remove_all(dir);
}
