#pragma once
// The differentiable op API, and its index: free functions on Tensors, one file per op in ops/ (each
// file has the forward, the backward and the math). Ops check their inputs and throw mgl::Error naming
// the op, the shapes, dtypes and devices; inputs of one op must share a device and (floating) dtype.
//
// The general-purpose ops are declared below, each defined in ops/<name>.cpp unless its section says
// otherwise. The fused MEGALODON ops (one autograd node each, with a hand-derived backward and a CUDA
// kernel of the same name in cuda/) each have their own header in ops/ (most bring structs: options,
// outputs, a carried state), included here. ops/detail/ holds the machinery several op files share;
// it is not API.
#include <cstdint>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

// ---- fused MEGALODON ops (docs/megalodon.md), one header and one .cpp each in ops/ ----------------
#include "ops/cema.h"             // cema, cema_coefficients, cema_step: the complex EMA (ops/cema.cpp)
#include "ops/chunk_attention.h"  // chunk_attention, chunk_attention_cached (ops/chunk_attention.cpp)
#include "ops/rope.h"             // rope: rotary embedding restarting in every chunk (ops/rope.cpp)
#include "ops/timestep_norm.h"    // timestep_norm and its carried state (ops/timestep_norm.cpp)

namespace mgl {

// ---- elementwise, binary with NumPy broadcasting (ops/add.cpp, sub.cpp, mul.cpp, div.cpp, pow.cpp)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);

// ---- elementwise, unary (one file each); shared code in ops/detail/elementwise.cpp ----------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);  // x * sigmoid(x)
Tensor gelu(const Tensor& x);  // x * Phi(x), the exact (erf) form
Tensor relu(const Tensor& x);

// ---- fused elementwise, one pass forward and one backward (ops/silu_mul.cpp) ---------------------------
// silu(a) * b (SwiGLU's product, MEGA's gate); a and b of one shape, no broadcasting.
Tensor silu_mul(const Tensor& a, const Tensor& b);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }

// ---- reductions over any set of dims (empty dims = all dims); shared code in ops/detail/reduce.cpp
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Maximum over dims; the gradient is shared equally among tied maxima (like torch.amax).
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Sums `grad` over the dims that broadcasting expanded, giving a tensor of `shape` (the backward
// of every broadcasting op). In ops/sum.cpp.
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

// ---- views and layout (no copy unless stated); transpose is in permute.cpp, (un)squeeze in reshape.cpp
Tensor reshape(const Tensor& x, const Shape& shape);  // one dim may be -1; copies if not viewable
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor expand(const Tensor& x, const Shape& shape);  // broadcast view (stride 0)
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);  // copies only when x is not contiguous
Tensor to(const Tensor& x, const Device& device);
Tensor cast(const Tensor& x, DType dtype);  // type conversion (f32 <-> bf16 <-> f64)

// ---- concatenation ---------------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

// ---- selection ---------------------------------------------------------------------------------------
// condition: any dtype, non-zero means true; broadcast against a and b.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// ---- linear algebra; the shared tensor side of every GEMM is ops/detail/gemm.cpp ---------------------
// a [..., m, k] @ b [..., k, n] with batch dims broadcast (b may be 2-D). cuBLAS on CUDA (f32
// accumulation for f32 and bf16 inputs); OpenBLAS or a blocked kernel on the CPU.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] -> x @ weight^T + bias, weight [out, in], bias [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

// ---- normalisation and softmax (over the last dim); shared nodes in ops/detail/{layer_norm,softmax}.h
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// (x - mean) / sqrt(var + eps) * weight + bias; weight/bias [last dim] or undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// x / sqrt(mean(x^2) + eps) * weight; weight [last dim] or undefined.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);

// ---- embeddings, losses, regularisation ---------------------------------------------------------------
// weight [vocab, dim], ids (i32/i64, any shape) -> [ids..., dim]; ids outside [0, vocab) throw. The ids
// are read on the host: ids on the CPU with a CUDA weight cost no synchronisation (a training step's).
Tensor embedding(const Tensor& weight, const Tensor& ids);
// Mean over rows whose target != ignore_index of -log softmax(logits)[target]; logits [N, C] (f32
// math for every dtype), targets [N] (i32/i64). Returns a 0-dim f32 (f64 for f64 logits) tensor.
// The targets are read on the host: targets on the CPU with CUDA logits cost no synchronisation.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// cross_entropy(linear(x, weight, bias), targets) without the [N, V] logits: x [N, D], weight [V, D], bias [V]
// or undefined, rows taken chunk_rows at a time (0: as many as ~256 MiB of f32 logits hold), the loss f32 (f64
// for f64) as cross_entropy's. Gradients are formed in the forward and kept for the backward, for the inputs
// that require grad (none under NoGradGuard). In ops/linear_cross_entropy.cpp.
Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                            int64_t ignore_index = -100, int64_t chunk_rows = 0);
// Zeroes each element with probability p and scales the rest by 1/(1-p). The mask is regenerated
// from the Philox (seed, offset) pair drawn from `gen`, in backward too, so it is never stored.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

// ---- factories (ops/factory.cpp) ---------------------------------------------------------------------
Tensor zeros_like(const Tensor& x);
Tensor ones_like(const Tensor& x);
Tensor full_like(const Tensor& x, double value);
Tensor arange(int64_t n, DType dtype = DType::i64, Device device = Device::cpu());

}  // namespace mgl
