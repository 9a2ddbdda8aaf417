// TimestepNorm on CUDA against the CPU reference: forward and backward (including the gradients of
// the incoming state), f32 and bf16, lengths that are not multiples of the scan's chunks, padding,
// and a million-step sequence against an f64 reference to measure the scan's long-range error.
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "ops/timestep_norm.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

constexpr double kEps = 1e-5;

struct Case {
  int64_t B, L, D, G;
  std::vector<int64_t> counts;  // incoming counts, one per sequence
};

// Inputs for compare_cuda_to_cpu: x, weight, bias, count, mean, var (f32 on the CPU; floating ones
// are cast to the dtype under test). x is shifted so the running means are of order 1.
std::vector<Tensor> make_inputs(const Case& c, uint64_t seed) {
  Tensor x = add(random_tensor({c.B, c.L, c.D}, seed, DType::f32), 0.5).detach().set_requires_grad(true);
  Tensor weight = random_tensor({c.D}, seed + 1, DType::f32, -0.5, 0.5).set_requires_grad(true);
  Tensor bias = random_tensor({c.D}, seed + 2, DType::f32, -0.5, 0.5).set_requires_grad(true);
  Tensor mean = random_tensor({c.B, c.G}, seed + 3, DType::f32, 0.0, 1.0).set_requires_grad(true);
  Tensor var = random_tensor({c.B, c.G}, seed + 4, DType::f32, 0.5, 1.5).set_requires_grad(true);
  return {x, weight, bias, Tensor::from_vector(c.counts, {c.B}), mean, var};
}

// compare_cuda_to_cpu on one case, with y and the outgoing state as outputs (or the state alone).
// The state computes in f32 (f64 in the reference): under bf16 the mean and var arrive as bf16 and are cast.
void check_case(const Case& c, DType dtype, const Tensor& mask = {}, bool state_only = false) {
  const uint64_t seed = fresh_seed();
  std::vector<Tensor> inputs = make_inputs(c, seed);
  if (mask.defined()) inputs.push_back(mask);
  std::string report;
  const double error = compare_cuda_to_cpu(
      [&](const std::vector<Tensor>& in) {
        const DType state_dtype = timestep_norm_state_dtype(in[0].dtype());  // f64 in the CPU reference
        const TimestepNormState state{in[3], cast(in[4], state_dtype), cast(in[5], state_dtype)};
        const TimestepNormOutput out =
            timestep_norm(in[0], in[1], in[2], c.G, &state, kEps, mask.defined() ? in[6] : Tensor());
        if (state_only) return std::vector<Tensor>{out.state.mean, out.state.var};
        return std::vector<Tensor>{out.y, out.state.mean, out.state.var};
      },
      inputs, dtype, &report);
  INFO(dtype_name(dtype) << " B " << c.B << " L " << c.L << " D " << c.D << " G " << c.G << " seed " << seed << "\n"
                         << report);
  CHECK(error <= tolerance_for(dtype));
}

}  // namespace

TEST_CASE("timestep_norm: CUDA matches CPU, forward and backward with state gradients", "[cuda][timestep_norm]") {
  const Case cases[] = {
      {1, 1, 8, 2, {0}},                    // a single step from the prior
      {2, 37, 48, 4, {5, 0}},               // L below one chunk, dg = 12
      {3, 1000, 40, 1, {0, 7, 123456789}},  // dg = 40 > a warp; D not a multiple of 32; a huge count
      {2, 1000, 96, 12, {3, 1}},            // several chunks
      {1, 4099, 64, 2, {11}},               // L one past a power of two; dg = 32
      {2, 37, 8, 8, {2, 0}},                // dg = 1
  };
  for (DType dtype : {DType::f32, DType::bf16})
    for (const Case& c : cases) check_case(c, dtype);
}

TEST_CASE("timestep_norm: CUDA matches CPU with a padding mask", "[cuda][timestep_norm]") {
  const Case c{3, 1000, 48, 4, {0, 9, 0}};
  // About a third of the steps padded, runs of them included; sequence 0 starts padded at count 0.
  const uint64_t mask_seed = fresh_seed();
  INFO("mask seed " << mask_seed);
  const std::vector<double> u = random_tensor({c.B, c.L}, mask_seed, DType::f64, 0.0, 1.0).to_vector<double>();
  std::vector<int32_t> flags(u.size());
  for (size_t i = 0; i < u.size(); ++i) flags[i] = u[i] < 0.33 || (i % 200) < 20;
  const Tensor mask = Tensor::from_vector(flags, {c.B, c.L});
  for (DType dtype : {DType::f32, DType::bf16}) check_case(c, dtype, mask);
}

TEST_CASE("timestep_norm: CUDA matches CPU when only the outgoing state is used", "[cuda][timestep_norm]") {
  for (DType dtype : {DType::f32, DType::bf16}) check_case({2, 300, 32, 4, {4, 0}}, dtype, {}, /*state_only=*/true);
}

TEST_CASE("timestep_norm: CUDA state counts and chunked calls", "[cuda][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Device gpu = Device::cuda(0);
  const int64_t B = 2, L = 777, D = 32, G = 4, L1 = 300;
  const Tensor x = to(add(random_tensor({B, L, D}, seed, DType::f32), 0.5), gpu);
  const Tensor weight = to(random_tensor({D}, seed + 1, DType::f32, -0.5, 0.5), gpu);
  const Tensor bias = to(random_tensor({D}, seed + 2, DType::f32, -0.5, 0.5), gpu);
  const TimestepNormOutput whole = timestep_norm(x, weight, bias, G, nullptr, kEps);
  const TimestepNormOutput first = timestep_norm(slice(x, 1, 0, L1), weight, bias, G, nullptr, kEps);
  const TimestepNormOutput second = timestep_norm(slice(x, 1, L1, L), weight, bias, G, &first.state, kEps);
  CHECK(whole.state.count.to_vector<int64_t>() == std::vector<int64_t>{L, L});
  CHECK(second.state.count.to_vector<int64_t>() == std::vector<int64_t>{L, L});
  CHECK(relative_error(slice(whole.y, 1, L1, L), second.y) <= tolerance_for(DType::f32));
  CHECK(relative_error(whole.state.mean, second.state.mean) <= tolerance_for(DType::f32));
  CHECK(relative_error(whole.state.var, second.state.var) <= tolerance_for(DType::f32));
  // An empty sequence passes the state through.
  const TimestepNormOutput empty = timestep_norm(slice(x, 1, 0, 0), weight, bias, G, &whole.state, kEps);
  CHECK(empty.state.count.to_vector<int64_t>() == std::vector<int64_t>{L, L});
  CHECK(relative_error(empty.state.mean, whole.state.mean) == 0.0);
}

TEST_CASE("timestep_norm: a million-step scan against an f64 sequential reference", "[cuda][timestep_norm]") {
  // f32 on the GPU, the reference in f64 on the CPU from the same f32 values: the difference is the
  // kernel's error. Means of order 3 make f32 accumulation hard (increments of ~1/n on a value of 3).
  const int64_t B = 1, L = int64_t{1} << 20, D = 8, G = 2;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Device gpu = Device::cuda(0);
  const Tensor x32 = add(random_tensor({B, L, D}, seed, DType::f32), 3.0).detach();
  const Tensor w32 = random_tensor({D}, seed + 1, DType::f32, -0.5, 0.5);
  const Tensor b32 = random_tensor({D}, seed + 2, DType::f32, -0.5, 0.5);
  const Tensor mean32 = random_tensor({B, G}, seed + 3, DType::f32, 2.5, 3.5);
  const Tensor var32 = random_tensor({B, G}, seed + 4, DType::f32, 0.2, 0.5);
  const Tensor count = Tensor::from_vector<int64_t>({1000}, {B});
  const Tensor wy = random_tensor({B, L, D}, seed + 5, DType::f32), wm = random_tensor({B, G}, seed + 6, DType::f32),
               wv = random_tensor({B, G}, seed + 7, DType::f32);

  // Leaves on one device in one dtype, the run, and its backward with the shared projections.
  struct Run {
    std::vector<Tensor> leaves;  // x, weight, bias, mean, var
    TimestepNormOutput out;
  };
  auto run = [&](const Device& device, DType dtype) {
    Run r;
    for (const Tensor& t : {x32, w32, b32, mean32, var32})
      r.leaves.push_back(to(cast(t, dtype), device).detach().set_requires_grad(true));
    const TimestepNormState state{to(count, device), r.leaves[3], r.leaves[4]};
    r.out = timestep_norm(r.leaves[0], r.leaves[1], r.leaves[2], G, &state, kEps);
    autograd::backward({r.out.y, r.out.state.mean, r.out.state.var},
                       {to(cast(wy, dtype), device), to(cast(wm, dtype), device), to(cast(wv, dtype), device)});
    return r;
  };
  const Run gpu_run = run(gpu, DType::f32);
  const Run ref = run(Device::cpu(), DType::f64);

  CHECK(gpu_run.out.state.count.to_vector<int64_t>() == std::vector<int64_t>{1000 + L});
  const std::pair<const char*, std::pair<Tensor, Tensor>> compared[] = {
      {"y", {gpu_run.out.y, ref.out.y}},
      {"mean_out", {gpu_run.out.state.mean, ref.out.state.mean}},
      {"var_out", {gpu_run.out.state.var, ref.out.state.var}},
      {"dx", {gpu_run.leaves[0].grad(), ref.leaves[0].grad()}},
      {"dweight", {gpu_run.leaves[1].grad(), ref.leaves[1].grad()}},
      {"dbias", {gpu_run.leaves[2].grad(), ref.leaves[2].grad()}},
      {"dmean_in", {gpu_run.leaves[3].grad(), ref.leaves[3].grad()}},
      {"dvar_in", {gpu_run.leaves[4].grad(), ref.leaves[4].grad()}},
  };
  for (const auto& [name, pair] : compared) {
    const double error = relative_error(pair.first, pair.second);
    INFO(name << ": relative error " << error);
    CHECK(error <= tolerance_for(DType::f32));
  }
}

TEST_CASE("timestep_norm: CUDA inputs on mixed devices throw", "[cuda][timestep_norm]") {
  const Device gpu = Device::cuda(0);
  const Tensor x = Tensor::zeros({1, 3, 4}, DType::f32, gpu);
  const Tensor w = Tensor::zeros({4}, DType::f32, gpu);
  const TimestepNormState cpu_state = timestep_norm_initial_state(1, 2, DType::f32);
  const std::pair<std::function<void()>, const char*> bad[] = {
      {[&] { timestep_norm(x, Tensor::zeros({4}), w, 2, nullptr); }, "weight"},
      {[&] { timestep_norm(x, w, w, 2, &cpu_state); }, "another device"},
      {[&] { timestep_norm(x, w, w, 2, nullptr, kEps, Tensor::zeros({1, 3}, DType::i32)); }, "padding_mask"},
  };
  for (const auto& [call, fragment] : bad) {
    std::string message;  // stays empty if nothing is thrown
    try {
      call();
    } catch (const Error& e) {
      message = e.what();
    }
    INFO("expected an error mentioning '" << fragment << "', got: " << message);
    CHECK(message.find(fragment) != std::string::npos);
  }
}
