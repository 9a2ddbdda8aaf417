#pragma once
// MEGALODON models for tests: a small config with every path active (the CUDA tests), a model in
// f64 with every parameter perturbed (so that every gradient path carries signal), an f32-valued
// reference for the CUDA comparisons, and copies of a model on another device or compute dtype.
#include <memory>

#include "autograd/grad_mode.h"
#include "nn/megalodon.h"
#include "ops/ops.h"
#include "support/testing.h"

namespace mgl::testing {

// A small model with every path active: 2 layers, 2 heads, SwiGLU, chunk 16.
inline nn::MegalodonConfig small_config() {
  nn::MegalodonConfig c = nn::MegalodonConfig::preset("test");
  c.model_dim = 64;
  c.z_dim = 32;
  c.value_dim = 48;
  c.ffn_hidden_dim = 96;
  c.norm_num_groups = 8;
  c.cema_ndim = 16;
  c.vocab_size = 301;
  c.chunk_size = 16;
  return c;
}

inline nn::InitOptions f64_options(Generator& gen) {
  nn::InitOptions options;
  options.dtype = DType::f64;
  options.generator = &gen;
  return options;
}

// The zero-initialised parameters (norm scales and shifts, biases, q/k scale and offset) get random
// values too, so that every gradient path carries signal.
inline void perturb(const nn::Module& model, uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  for (const nn::Parameter& p : model.named_parameters())
    add_(p.tensor, mul(rand(p.tensor.shape(), DType::f64, Device::cpu(), gen), 0.2));
}

// The model of `config` in f64 with perturbed parameters (see perturb), computing in f64.
inline std::unique_ptr<nn::Megalodon> f64_model(const nn::MegalodonConfig& config, uint64_t seed) {
  Generator gen(seed);
  auto model = std::make_unique<nn::Megalodon>(config, f64_options(gen));
  model->set_compute_dtype(DType::f64);
  perturb(*model, seed + 1);
  return model;
}

// The reference of the CUDA tests: an f64 model on the CPU whose parameters hold f32 values, so that
// f32 models can hold exactly the same parameters.
inline std::unique_ptr<nn::Megalodon> reference_model(const nn::MegalodonConfig& config, uint64_t seed) {
  Generator gen(seed);
  auto model = std::make_unique<nn::Megalodon>(config, f64_options(gen));
  model->set_compute_dtype(DType::f64);
  NoGradGuard no_grad;
  Generator noise(seed + 1);
  for (const nn::Parameter& p : model->named_parameters()) {
    // Non-zero norm scales, biases and q/k affine, so every gradient path carries signal (a zero-mean
    // perturbation in [-0.1, 0.1), which leaves the model as well conditioned as at init); values
    // rounded to f32 so that the f32 models hold exactly the same parameters.
    add_(p.tensor, mul(add(rand(p.tensor.shape(), DType::f64, Device::cpu(), noise), -0.5), 0.2));
    copy_(p.tensor, cast(cast(p.tensor, DType::f32), DType::f64));
  }
  return model;
}

// Copies the parameters of `from` into `to` (same names), perturbing none.
inline void copy_parameters(const nn::Module& from, const nn::Module& to) {
  NoGradGuard no_grad;
  const auto source = from.named_parameters();
  const auto target = to.named_parameters();
  REQUIRE(source.size() == target.size());
  for (size_t i = 0; i < source.size(); ++i) copy_(target[i].tensor, source[i].tensor);
}

// An f32-parameter model with the reference's values, on `device`, computing in `dtype`.
inline std::unique_ptr<nn::Megalodon> copy_model(const nn::Megalodon& reference, const Device& device, DType dtype) {
  auto model = std::make_unique<nn::Megalodon>(reference.config());
  copy_parameters(reference, *model);
  model->to(device);
  model->set_compute_dtype(dtype);
  return model;
}

}  // namespace mgl::testing
