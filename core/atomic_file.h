#pragma once
// A file written atomically: its bytes go to "<path>.tmp", which commit() flushes, syncs to the disk and
// closes, and only then renames over `path`. A reader, or a crash at any point, sees the old file or the
// whole new one, never a part of it. A failure names the file and the OS reason (strerror: "No space left on
// device", "Permission denied"), never only "failed", and removes the temporary file, as does an AtomicFile
// destroyed uncommitted (an exception while its bytes were being made).
//
// For writers that stream (nn::write_safetensors, a tensor at a time); apps::write_file_atomically writes a
// whole string through it. HDF5 writes its own files: write_hdf5_atomically closes its temporary file and
// calls sync_file_to_disk before the rename.
#include <cstddef>
#include <cstdio>
#include <string>

namespace mgl {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // creates <path>.tmp (replacing one an interrupted write left)
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // After commit() or a failure (an exception) the object may only be destroyed.
  void write(const void* data, size_t bytes);
  // Flushes, syncs and closes the temporary file, then renames it over the path.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what);  // removes the temporary file, throws with errno's reason

  std::string path_, temporary_;
  std::FILE* file_ = nullptr;  // null once committed or failed
};

// fsync(2) of a closed file, so that a rename publishing it never publishes bytes still only in the page
// cache (a power cut would leave the new name on a file of zeros or of nothing). Throws naming the file.
void sync_file_to_disk(const std::string& path);

}  // namespace mgl
