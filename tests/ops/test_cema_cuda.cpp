// CEMA on CUDA (cuda/cema.cu, a chunked scan) against the CPU reference: forward and every
// gradient in f32 and bf16 for lengths that are not multiples of the 32-step chunk, shapes at the
// edges of the passes' blocks (the parameter-gradient pass's spans of 512 tokens and tiles of 16 channels, its
// half-chunks and pairs of modes, the local pass's spans and tiles, the output pass's tiles of 8 channels × 16
// groups), the forward's groups of chunks (against the CPU with groups of 2, against pieces of the same sequence
// with groups of 8), a 65536-token sequence against the f64 reference, the decoding step, and the CUDA-only input
// limits.
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "cuda/cema.h"
#include "ops/cema.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

// x, alpha, delta, theta, gamma, omega, h_in (or undefined) as f32 CPU leaves.
std::vector<Tensor> random_inputs(int64_t B, int64_t L, int64_t D, int64_t N, uint64_t seed, bool with_state,
                                  double decay_low = -1.5, double decay_high = 1.5) {
  auto leaf = [](Tensor t) { return t.set_requires_grad(true); };
  return {leaf(random_tensor({B, L, D}, seed, DType::f32)),
          leaf(random_tensor({D, N, 1}, seed + 1, DType::f32, decay_low, decay_high)),
          leaf(random_tensor({D, N, 1}, seed + 2, DType::f32, decay_low, decay_high)),
          leaf(random_tensor({D, 1, 1}, seed + 3, DType::f32, -2.0, 2.0)),
          leaf(random_tensor({D, N, 2}, seed + 4, DType::f32)),
          leaf(random_tensor({D, 1}, seed + 5, DType::f32)),
          with_state ? leaf(random_tensor({B, D, N, 2}, seed + 6, DType::f32)) : Tensor()};
}

// compare_cuda_to_cpu casts every floating input to the tested dtype (f64 for the CPU reference);
// CEMA takes bf16 only for x, so the parameters and the state go back to f32 — or stay f64 in the
// reference (a differentiable cast).
CemaOutput run(const std::vector<Tensor>& in, bool return_state) {
  const DType parameter_dtype = in[0].dtype() == DType::f64 ? DType::f64 : DType::f32;
  auto param = [&](const Tensor& t) { return t.defined() ? cast(t, parameter_dtype) : t; };
  return cema(in[0], param(in[1]), param(in[2]), param(in[3]), param(in[4]), param(in[5]), param(in[6]),
              return_state);
}

std::vector<Tensor> y_and_state(const std::vector<Tensor>& in) {
  const CemaOutput out = run(in, true);
  return {out.y, out.h_out};
}

struct Shape {
  int64_t B, L, D, N;
};

// Forward and every gradient against the CPU for each shape, with an incoming state, in f32 and bf16.
void check_shapes(std::initializer_list<Shape> shapes) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const Shape& s : shapes) {
      const uint64_t seed = fresh_seed();
      std::string report;
      const double error =
          compare_cuda_to_cpu(y_and_state, random_inputs(s.B, s.L, s.D, s.N, seed, true), dtype, &report);
      INFO(dtype_name(dtype) << " B = " << s.B << " L = " << s.L << " D = " << s.D << " N = " << s.N << " seed "
                             << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

}  // namespace

TEST_CASE("cema: CUDA matches CPU, forward and every gradient", "[cuda][cema]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t L : {1, 37, 1000, 5000}) {
      const int64_t D = L > 1000 ? 7 : 67;
      const uint64_t seed = fresh_seed();
      std::string report;
      const double error = compare_cuda_to_cpu(y_and_state, random_inputs(2, L, D, 16, seed, true), dtype, &report);
      INFO(dtype_name(dtype) << " L = " << L << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("cema: CUDA at the edges of the passes' blocks", "[cuda][cema]") {
  // The gradient pass takes spans of 16 chunks (512 tokens) and tiles of 16 channels: a span and a
  // tile exactly full, one token and one channel past them (a last span of one 1-token chunk, a tile
  // of one live channel), fewer modes than the 16 mode slots of a tile, B > 1 and an incoming state.
  // The local pass takes tiles of 16 channels and spans that grow while 512 blocks remain: B 4, D 33,
  // 127 chunks make spans of 2 chunks and a last span of one 6-token chunk, in both sweeps.
  check_shapes({{2, 512, 16, 16}, {2, 1537, 17, 16}, {3, 545, 33, 3}, {4, 4038, 33, 16}});
}

TEST_CASE("cema: CUDA gradient pass at the edges of its half-chunks and mode pairs", "[cuda][cema]") {
  // The gradient pass walks each chunk in two halves of 16 steps with a thread per pair of modes: a last chunk of
  // 16 steps (no second half), of 17 (a second half of one step) and of 31; odd N (the last pair's second slot is
  // a zero mode) and N = 15 (7 full pairs and a half one); channels past the last full tile of 16.
  check_shapes({{2, 48, 19, 7}, {3, 49, 18, 5}, {1, 63, 33, 15}, {2, 16, 5, 1}});
}

TEST_CASE("cema: CUDA forward in groups of chunks against the CPU", "[cuda][cema]") {
  // Groups of 2 (cema_group_chunks): B 2, D 260, 263 chunks, the last of one 5-token chunk; 132 groups make
  // a last output tile of 4 groups, 260 channels a last tile of 4 channels (output pass) and of 4 (local pass).
  // Groups of 4: B 2, D 130, 1030 chunks, the last of 11 tokens, so the last group holds 2 chunks.
  struct Case {
    int64_t B, L, D, G;
  };
  for (const Case& c : {Case{2, 262 * 32 + 5, 260, 2}, Case{2, 1029 * 32 + 11, 130, 4}}) {
    const int64_t N = 16;
    REQUIRE(cuda::cema_group_chunks({c.B, c.L, c.D, N}) == c.G);
    for (DType dtype : {DType::f32, DType::bf16}) {
      const uint64_t seed = fresh_seed();
      std::string report;
      const double error =
          compare_cuda_to_cpu(y_and_state, random_inputs(c.B, c.L, c.D, N, seed, true), dtype, &report);
      INFO("groups of " << c.G << ", " << dtype_name(dtype) << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("cema: CUDA forward in groups of 8 chunks equals the same sequence in pieces", "[cuda][cema]") {
  // The whole sequence runs in groups of 8 chunks (876 chunks: a last group of 4, the last chunk of one token;
  // 110 groups: a last output tile of 14; 300 channels: last tiles of 4 and 12; local-pass spans of 64 chunks,
  // the last of 44); each of its five pieces, with the state carried from piece to piece, in chunks
  // (groups of 1), which the tests above hold to the CPU.
  const int64_t B = 2, L = 28001, D = 300, N = 16, cuts[] = {0, 5600, 11200, 16800, 22400, L};
  REQUIRE(cuda::cema_group_chunks({B, L, D, N}) == 8);
  REQUIRE(cuda::cema_group_chunks({B, L - cuts[4], D, N}) == 1);
  const Device gpu = Device::cuda(0);
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    std::vector<Tensor> in;
    for (const Tensor& t : random_inputs(B, L, D, N, seed, true)) in.push_back(to(t.detach(), gpu));
    in[0] = cast(in[0], dtype);
    const CemaOutput whole = run(in, true);
    std::vector<Tensor> pieces;
    Tensor state = in[6];
    for (size_t k = 0; k + 1 < std::size(cuts); ++k) {
      std::vector<Tensor> part = in;
      part[0] = contiguous(slice(in[0], 1, cuts[k], cuts[k + 1]));
      part[6] = state;
      const CemaOutput out = run(part, true);
      pieces.push_back(out.y);
      state = out.h_out;
    }
    CHECK(relative_error(whole.y, concat(pieces, 1)) <= tolerance_for(dtype));
    CHECK(relative_error(whole.h_out, state) <= tolerance_for(DType::f32));
  }
}

TEST_CASE("cema: CUDA with fewer than 16 modes and no incoming state", "[cuda][cema]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t N : {1, 5}) {
      const uint64_t seed = fresh_seed();
      std::string report;
      const double error = compare_cuda_to_cpu(
          [](const std::vector<Tensor>& in) { return std::vector<Tensor>{run(in, false).y}; },
          random_inputs(3, 101, 33, N, seed, false), dtype, &report);
      INFO(dtype_name(dtype) << " N = " << N << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("cema: CUDA gradients that flow only through h_out", "[cuda][cema]") {
  // G_hin = G_out · conj(q^L): the power q^L of an f32 coefficient carries about L·ε of relative
  // rounding in any f32 implementation, so this path is compared with the CPU computing its
  // coefficients in f32 too (the same cema_mode code), not with an f64 reference.
  const uint64_t seed = fresh_seed();
  std::string report;
  const double error = compare_cuda_to_cpu(
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{run(in, true).h_out}; },
      random_inputs(2, 70, 9, 16, seed, true), DType::f32, &report, DType::f32);
  INFO("seed " << seed << "\n" << report);
  CHECK(error <= tolerance_for(DType::f32));
}

TEST_CASE("cema: 65536 tokens on CUDA in f32 against the f64 reference", "[cuda][cema]") {
  // Decays with memories up to ~170 tokens (α·δ >= 0.006), so state crosses several chunks. The
  // f32 coefficients themselves bound the attainable agreement with f64 at about ε/(1 − |q|).
  const int64_t B = 1, L = 65536, D = 4, N = 16;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::vector<Tensor> base = random_inputs(B, L, D, N, seed, true, -2.5, 0.5);
  const Tensor w_y = random_tensor({B, L, D}, seed + 10, DType::f32);
  const Tensor w_h = random_tensor({B, D, N, 2}, seed + 11, DType::f32);

  auto leaves_on = [&](const Device& device, DType dtype) {
    std::vector<Tensor> out;
    for (const Tensor& t : base) {
      Tensor copy = Tensor::empty(t.shape(), dtype, device);
      copy_(copy, t);
      out.push_back(copy.set_requires_grad(true));
    }
    return out;
  };
  const std::vector<Tensor> ref_in = leaves_on(Device::cpu(), DType::f64);
  const std::vector<Tensor> gpu_in = leaves_on(Device::cuda(0), DType::f32);
  const CemaOutput ref = run(ref_in, true);
  const CemaOutput gpu = run(gpu_in, true);
  autograd::backward({ref.y, ref.h_out}, {cast(w_y, DType::f64), cast(w_h, DType::f64)});
  autograd::backward({gpu.y, gpu.h_out}, {to(w_y, Device::cuda(0)), to(w_h, Device::cuda(0))});

  CHECK(relative_error(gpu.y, ref.y) <= 1e-4);
  CHECK(relative_error(gpu.h_out, ref.h_out) <= 1e-4);
  const char* names[] = {"x", "alpha", "delta", "theta", "gamma", "omega", "h_in"};
  for (size_t k = 0; k < ref_in.size(); ++k) {
    const double error = relative_error(gpu_in[k].grad(), ref_in[k].grad());
    INFO("gradient of " << names[k] << ": relative error " << error);
    CHECK(error <= 1e-4);
  }
}

TEST_CASE("cema: the CUDA decoding step matches the CPU step and the full sequence", "[cuda][cema]") {
  const int64_t B = 3, L = 40, D = 19, N = 16;
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const std::vector<Tensor> in = random_inputs(B, L, D, N, seed, true);
    const Tensor x = cast(in[0].detach(), dtype);
    const CemaCoefficients cpu_c = cema_coefficients(in[1], in[2], in[3], in[4], in[5]);
    const Device gpu = Device::cuda(0);
    const CemaCoefficients gpu_c = cema_coefficients(to(in[1], gpu), to(in[2], gpu), to(in[3], gpu), to(in[4], gpu),
                                                     to(in[5], gpu));
    CHECK(relative_error(gpu_c.q, cpu_c.q) <= 1e-6);
    Tensor cpu_h = Tensor::empty({B, D, N, 2});
    copy_(cpu_h, in[6]);
    Tensor gpu_h = Tensor::empty({B, D, N, 2}, DType::f32, gpu);
    copy_(gpu_h, in[6]);
    const CemaOutput whole = cema(to(x, gpu), to(in[1], gpu), to(in[2], gpu), to(in[3], gpu), to(in[4], gpu),
                                  to(in[5], gpu), to(in[6].detach(), gpu), true);
    for (int64_t t = 0; t < L; ++t) {
      const Tensor x_t = contiguous(squeeze(slice(x, 1, t, t + 1), 1));
      const Tensor cpu_y = cema_step(x_t, cpu_c, cpu_h);
      const Tensor gpu_y = cema_step(to(x_t, gpu), gpu_c, gpu_h);
      INFO("t = " << t);
      CHECK(relative_error(gpu_y, cpu_y) <= tolerance_for(dtype));
      CHECK(relative_error(gpu_y, squeeze(slice(whole.y, 1, t, t + 1), 1)) <= tolerance_for(dtype));
    }
    CHECK(relative_error(gpu_h, cpu_h) <= 1e-5);
    CHECK(relative_error(gpu_h, whole.h_out) <= 1e-5);
  }
}

TEST_CASE("cema: CUDA input limits throw clear errors", "[cuda][cema]") {
  const Device gpu = Device::cuda(0);
  const std::vector<Tensor> in = random_inputs(1, 8, 3, 17, fresh_seed(), false);
  std::vector<Tensor> on_gpu;
  for (const Tensor& t : in) on_gpu.push_back(t.defined() ? to(t.detach(), gpu) : t);
  REQUIRE_THROWS_AS(run(on_gpu, false), Error);
  try {
    run(on_gpu, false);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("N <= 16") != std::string::npos);
  }
  std::vector<Tensor> f64 = random_inputs(1, 8, 3, 4, fresh_seed(), false);
  for (Tensor& t : f64)
    if (t.defined()) t = to(cast(t.detach(), DType::f64), gpu);
  REQUIRE_THROWS_AS(cema(f64[0], f64[1], f64[2], f64[3], f64[4], f64[5], Tensor(), false), Error);
  try {
    cema(f64[0], f64[1], f64[2], f64[3], f64[4], f64[5], Tensor(), false);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("CUDA parameters must be f32") != std::string::npos);
  }
}
