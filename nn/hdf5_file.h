#pragma once
// HDF5 files of named tensors: checkpoints, the debug-state tool's inputs and outputs. Dataset names
// are PyTorch state_dict names ("layers.0.mega.cema.alpha"); a '/' makes groups ("grads/embed.weight").
// Files are readable by h5dump and h5py. Every HDF5 failure becomes an mgl::Error naming the file and
// the dataset; HDF5's own error printing is turned off.
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
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  const std::string& path() const { return path_; }

  // Stores the tensor's values (any device, any layout) in its dtype; bf16 is stored as f32 (HDF5 has
  // no bfloat16 type). Intermediate groups are created as needed.
  void write(const std::string& name, const Tensor& tensor);
  // Reads a dataset into a new CPU tensor of the stored type (f32, f64, i32 or i64).
  Tensor read(const std::string& name) const;
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

 private:
  std::string path_;
  int64_t file_ = -1;  // hid_t
};

// Writes `path` atomically: `fill` writes into "<path>.tmp", which is renamed over `path` only after it
// was closed successfully. A failure (or a crash) never leaves a half-written file at `path`.
void write_hdf5_atomically(const std::string& path, const std::function<void(Hdf5File&)>& fill);

}  // namespace mgl::nn
