#pragma once
// Moving a module's parameters to and from HDF5 files under their state_dict names.
#include <string>

#include "nn/hdf5_file.h"
#include "nn/module.h"

namespace mgl::nn {

// Writes every parameter as "<prefix><name>" (e.g. prefix "model/" gives "model/layers.0.mega.wz.weight").
void save_parameters(const Module& module, Hdf5File& file, const std::string& prefix = "");

// Reads every parameter from "<prefix><name>" into the existing tensors (converting dtype, on their
// device). Strict: a missing dataset or a shape mismatch throws naming the parameter and both shapes.
void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix = "");

}  // namespace mgl::nn
