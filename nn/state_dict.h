#pragma once
// Reading a module's parameters from HDF5 files under their state_dict names (nn/checkpoint.h writes them).
#include <string>

#include "nn/hdf5_file.h"
#include "nn/module.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

// Reads every parameter from "<prefix><name>" into the existing tensors (converting dtype, on their
// device). Strict: a missing dataset or a shape mismatch throws naming the parameter and both shapes.
// Files hold whole tensors: a module split over `tp` takes this rank's piece of each (nn/tensor_parallel.h).
void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix = "",
                     const TensorParallel& tp = {});

}  // namespace mgl::nn
