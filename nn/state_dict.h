#pragma once
// Reading a module's parameters from HDF5 files under their state_dict names (nn/checkpoint.h writes them).
#include <string>

#include "nn/hdf5_file.h"
#include "nn/module.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

// Reads every parameter from "<prefix><name>" into the existing tensors (converting dtype, on their
// device). Strict: a missing dataset, a shape mismatch, an integer dataset or a NaN or inf value throws
// naming the parameter (read_checked_floats).
// Files hold whole tensors: a module split over `tp` takes this rank's piece of each (nn/tensor_parallel.h).
void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix = "",
                     const TensorParallel& tp = {});

// Reads dataset `name` of `file` and checks it holds finite floating-point values of `shape`; `what`
// names it in errors ("parameter", "optimizer state").
Tensor read_checked_floats(const Hdf5File& file, const std::string& name, const Shape& shape, const char* what);

}  // namespace mgl::nn
