#pragma once
// safetensors files (the Hugging Face format, read by transformers, PyTorch's safetensors package, JAX, ...):
//   8 bytes        N, the header's length (unsigned, little-endian)
//   N bytes        a JSON object: "__metadata__" (string -> string, optional) and, per tensor,
//                  "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
//   the rest       the tensors' bytes, row-major, little-endian, offsets counted from the end of the header
// Written in the order given, back to back, the header padded with spaces to a multiple of 8 bytes (as the
// reference writer does), atomically (a temporary file renamed at the end). Reading checks the header length
// against the file, the JSON, every dtype, and that each tensor's byte range fits its shape and the file;
// an mgl::Error names the file and what is wrong. Dtypes: F32, BF16, F64, I32, I64 (ours).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mgl::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsContents {
  NamedTensors tensors;                         // CPU tensors, in the order of their bytes in the file
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Tensors of any device and layout are written as their values, in their dtype.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata);

SafetensorsContents read_safetensors(const std::string& path);

// Whether the file starts like a safetensors file (a plausible header length, then '{').
bool looks_like_safetensors(const std::string& path);

}  // namespace mgl::nn
