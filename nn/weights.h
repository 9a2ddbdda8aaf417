#pragma once
// A model's weights, read from any file megalodon.cpp knows, and written as an HDF5 weights file or a
// safetensors file (apps/convert.cpp writes the rest of an export directory; docs/interop.md). Parameters carry their state_dict names, which are the official repository's:
//   training checkpoint  nn/checkpoint.h: model/<name>, with the model config and the tokenizer
//   run directory        its newest valid checkpoint (<dir>/checkpoints)
//   HDF5 weights file    <name> at the root (debug_state's input), root attributes model_config (our JSON)
//                        and tokenizer (its identity), the bytes tokenizer/model for a SentencePiece model
//   safetensors file     <name> tensors; metadata "model_config" and "tokenizer" as above, "format": "pt"
//   export directory     model.safetensors, config.json (the official ModelConf form: read when the
//                        safetensors metadata has no config) and tokenizer.model for a SentencePiece model
// Anything else is refused with a message saying what the file looks like (a PyTorch file is pointed to
// tools/convert_pth.py).
#include <optional>
#include <string>

#include "nn/megalodon_config.h"
#include "nn/module.h"
#include "nn/safetensors.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

struct Weights {
  NamedTensors tensors;                   // CPU tensors under their state_dict names, in the file's order
  std::optional<MegalodonConfig> config;  // when the file carries one
  std::string tokenizer;                  // the tokenizer's identity (nn/checkpoint.h); empty when unknown
  std::string tokenizer_model;            // a SentencePiece model's bytes; empty for bytes or when unknown

  // Removes the tensor `name` (a batch stored beside the weights) and returns it; throws when absent.
  Tensor take(const std::string& name);
  int64_t parameter_count() const;  // elements over all tensors
};

// Reads `path` in whichever of the formats above it is; `what` returns that format's name.
Weights read_weights(const std::string& path, std::string* what = nullptr);

// Each written atomically, with the config and the tokenizer identity when known (the tokenizer's bytes
// go into the HDF5 file; an export directory holds them as tokenizer.model beside the safetensors file).
void write_weights_hdf5(const std::string& path, const Weights& weights);
void write_weights_safetensors(const std::string& path, const Weights& weights);

// Copies the weights into the model's parameters (any device and dtype). Strict: every parameter is there
// with its shape, and every tensor is a parameter; the first difference is an error naming it and `source`.
// The weights are whole: a model split over `tp` takes this rank's piece of each (nn/tensor_parallel.h).
void load_weights(const Weights& weights, const Module& model, const std::string& source, const TensorParallel& tp = {});

}  // namespace mgl::nn
