#pragma once
// Reading a module's parameters from HDF5 files under their state_dict names (nn/checkpoint.h writes them).
#include <string>

#include "nn/hdf5_file.h"
#include "nn/module.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

// Reads every parameter from "<prefix><name>" into the existing tensors (converting dtype, on their
// device). Strict: a missing dataset, a shape mismatch, an integer dataset or a NaN or inf value throws
// naming the parameter (checked_piece).
// Files hold whole tensors: a module split over `tp` takes this rank's piece of each (nn/tensor_parallel.h).
void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix = "",
                     const TensorParallel& tp = {});

// `stored`, a whole tensor that `source` holds under `name` for parameter `p` (its values, or state of the
// same shape such as AdamW's moments), checked to hold finite floating-point values of p's whole shape,
// and cut to this rank's piece of it under `tp`. `what` names it in errors ("parameter", "optimizer state").
// Every loader of stored weights (checkpoints, nn/weights.h) goes through it.
Tensor checked_piece(const Tensor& stored, const Parameter& p, const TensorParallel& tp, const std::string& source,
                     const std::string& name, const char* what);

}  // namespace mgl::nn
