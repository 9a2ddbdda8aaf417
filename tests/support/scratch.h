#pragma once
// Scratch folders for the files tests write. Every test process gets one folder,
// <tmp>/mgl_test_<pid>_XXXXXX (mkdtemp), made at first use and removed
// with everything in it when the process ends normally: failed tests included, since a failed REQUIRE
// ends its test case, not the process. Repeated runs of the suite leave nothing behind; only a crashed
// or killed test process leaves its folder (named by its pid). <tmp> is $MGL_TEST_TMPDIR, which CTest
// sets to a folder of the build tree that must be empty once the suite has run (tests/CMakeLists.txt),
// else the system's temporary directory ($TMPDIR, else /tmp).
//
// Under mpirun each rank is a process with its own folder; the folders that every rank must name alike
// (a run directory shared by the ranks of a grid) come from SharedScratch.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "dist/parallel_state.h"

namespace mgl::testing {

// This process's scratch folder.
const std::filesystem::path& process_scratch();

// process_scratch()/name, made empty (removed first if an earlier test case of this process left it).
std::filesystem::path scratch(const std::string& name);

// The folders every rank of `ps`'s world names alike in one test case:
// <tmp>/mgl_test_shared_<seed>/<name>, with `seed` the same on every rank (shared_seed()). operator()
// is collective: rank 0 makes the folder empty, then every rank waits for it. When the test case ends
// normally, every rank waits for the others to be done with the folders and rank 0 removes them. A
// failed REQUIRE leaves the ranks out of step, so then nothing waits and the folders stay behind:
// CTest's scratch_folder_check names them.
class SharedScratch {
 public:
  SharedScratch(std::shared_ptr<const dist::ParallelState> ps, uint64_t seed);
  ~SharedScratch();
  SharedScratch(const SharedScratch&) = delete;
  SharedScratch& operator=(const SharedScratch&) = delete;

  std::filesystem::path operator()(const std::string& name) const;

 private:
  std::shared_ptr<const dist::ParallelState> ps_;
  std::filesystem::path root_;
};

}  // namespace mgl::testing
