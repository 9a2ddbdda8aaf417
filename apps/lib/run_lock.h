#pragma once
// One process per folder (issue 15 item 3). Two trainers writing the same run folder interleave their
// checkpoints and metrics: one run's output vanishes although it reported success, or both fail for an
// unrelated reason. So a process that writes a folder (train's --out, prepare's --out, convert's export
// directory) first takes an exclusive flock(2) on <folder>/.lock and holds it while it writes there; a second
// process is refused with one line naming the folder and the holder's pid.
//
// Why flock: the kernel releases the lock when its holder dies however it dies (SIGKILL, a crash, a
// lost node), so a .lock file left behind by a killed run is stale by construction and the next run
// simply takes it; no pid-liveness guessing. (flock is advisory and per open file, so it also refuses
// a second lock taken in the same process, which the unit test uses. On NFS, flock is emulated with
// fcntl locks by Linux >= 2.6.12 and still exclusive.)
#include <string>

namespace mgl::apps {

class RunLock {
 public:
  // Creates `folder` if needed and locks it. Throws mgl::Error "<what> folder '<folder>' is in use by
  // process <pid> ..." when another process holds the lock, or naming the OS reason when the lock file
  // cannot be created (e.g. "Read-only file system").
  RunLock(const std::string& folder, const std::string& what);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  // The lock file's path, <folder>/.lock (it holds the holder's pid as text, for the refusal message).
  static std::string lock_path(const std::string& folder);

 private:
  int fd_ = -1;
};

}  // namespace mgl::apps
