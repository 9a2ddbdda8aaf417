#pragma once
// HDF5 files of named tensors: checkpoints, the debug-state tool's inputs and outputs. Dataset names
// are PyTorch state_dict names ("layers.0.mega.cema.alpha"); a '/' makes groups ("grads/embed.weight").
// Files are readable by h5dump and h5py. Every HDF5 failure becomes an mgl::Error naming the file and
// the dataset; HDF5's own error printing is turned off.
//
// Files prove themselves: every dataset this class writes carries an attribute "fnv1a64", the FNV-1a
// hash (core/fnv1a.h) of its name, its shape and its stored bytes, which every read recomputes; and
// seal_attributes() stores "attributes_fnv1a64", the hash of every root attribute's name and bytes,
// which opening the file for reading recomputes. A flipped bit, a truncated or swapped dataset, or an
// edited attribute is then an error naming the file and what failed, not silently wrong numbers.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mgl::nn {

class Hdf5File {
 public:
  enum class Mode { read, create };  // create truncates an existing file

  Hdf5File(const std::string& path, Mode mode);
  ~Hdf5File();
  // Closes the file now, throwing (with the OS reason) when the data it still buffers cannot be written;
  // a writer calls it so that a failure is seen before the file is used (write_hdf5_atomically does).
  void close();
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  const std::string& path() const { return path_; }

  // Stores the tensor's values (any device, any layout) in its dtype; bf16 is stored as f32 (HDF5 has
  // no bfloat16 type). Intermediate groups are created as needed.
  void write(const std::string& name, const Tensor& tensor);
  // Reads a dataset into a new CPU tensor of the stored type (f32, f64, i32 or i64), verifying its
  // checksum when it has one.
  Tensor read(const std::string& name) const;
  bool has_checksum(const std::string& name) const;  // whether the dataset carries "fnv1a64"
  bool contains(const std::string& name) const;
  std::vector<std::string> dataset_names() const;  // every dataset, recursively, with group prefixes
  // A byte string (a serialized tokenizer model, ...) as a 1-D dataset of unsigned 8-bit integers.
  void write_bytes(const std::string& name, const std::string& bytes);
  std::string read_bytes(const std::string& name) const;  // throws unless the dataset is 1-D u8

  // Attributes on the root group (config JSON, step, tokenizer identity, ...).
  void set_attribute(const std::string& name, const std::string& value);
  void set_attribute(const std::string& name, int64_t value);
  void set_attribute(const std::string& name, double value);
  bool has_attribute(const std::string& name) const;
  std::string string_attribute(const std::string& name) const;
  int64_t int_attribute(const std::string& name) const;
  double double_attribute(const std::string& name) const;
  // Stores the hash of every root attribute (call after the last set_attribute); a file opened for
  // reading that holds it is verified against it at once. write_hdf5_atomically seals its files.
  void seal_attributes();
  bool sealed() const { return has_attribute(kAttributesChecksum); }
  static constexpr const char* kAttributesChecksum = "attributes_fnv1a64";

 private:
  uint64_t attributes_checksum() const;

  std::string path_;
  int64_t file_ = -1;  // hid_t
};

// Writes `path` atomically: `fill` writes into "<path>.tmp", which is sealed (seal_attributes) and
// renamed over `path` only after it was closed successfully and synced to the disk. A failure (or a crash)
// never leaves a half-written file at `path`.
void write_hdf5_atomically(const std::string& path, const std::function<void(Hdf5File&)>& fill);

}  // namespace mgl::nn
