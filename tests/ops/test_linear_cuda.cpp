// linear on CUDA against the CPU, forward and backward (dx, dW, db), f32 (1e-5), bf16 (1e-2) and f64 (against the
// f32 CPU result, 1e-5): with cuBLASLt's bias epilogues (cuda/gemm_bias.h) and with them switched off (the
// fallback: the bias broadcast into y and a separate column sum for db), on row and feature counts off the 8/16
// grid, with a bias that does and does not require grad and inputs that do not; and the two paths against each
// other on the same GPU inputs, checking through gemm_bias_counts() which path each run took.
#include "autograd/engine.h"
#include "cuda/gemm_bias.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

// Sets the epilogue switch for a scope.
class EpiloguesSwitch {
 public:
  explicit EpiloguesSwitch(bool enabled) : before_(cuda::gemm_bias_epilogues_enabled()) {
    cuda::set_gemm_bias_epilogues(enabled);
  }
  ~EpiloguesSwitch() { cuda::set_gemm_bias_epilogues(before_); }
  EpiloguesSwitch(const EpiloguesSwitch&) = delete;
  EpiloguesSwitch& operator=(const EpiloguesSwitch&) = delete;

 private:
  bool before_;
};

// Which inputs require grad (the bias, when there is one).
struct Grads {
  bool x = true, w = true, b = true;
};

void compare(const char* name, const Shape& x_shape, int64_t out_features, bool with_bias, Grads grads = {}) {
  const int64_t in_features = x_shape.back();
  for (bool epilogues : {true, false}) {
    const EpiloguesSwitch use(epilogues);
    for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
      const uint64_t seed = fresh_seed();
      Tensor x = random_tensor(x_shape, seed, DType::f32).set_requires_grad(grads.x);
      Tensor w = random_tensor({out_features, in_features}, seed + 1, DType::f32).set_requires_grad(grads.w);
      Tensor b = with_bias ? random_tensor({out_features}, seed + 2, DType::f32).set_requires_grad(grads.b) : Tensor();
      std::string report;
      const double error = compare_cuda_to_cpu(
          [](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear(in[0], in[1], in[2])}; }, {x, w, b},
          dtype, &report);
      INFO(name << " " << dtype_name(dtype) << (with_bias ? " with" : " without") << " bias, epilogues "
                << (epilogues ? "on" : "off") << ", grads x " << grads.x << " w " << grads.w << " b " << grads.b
                << ", seed " << seed << "\n"
                << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

// y and the gradients of one linear on the GPU in `dtype` from f32 CPU inputs, seeded with dy.
struct Run {
  Tensor y, dx, dw, db;
  cuda::GemmBiasCounts counts;  // the GEMMs it ran with each epilogue
};
Run run_on_gpu(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy, DType dtype) {
  auto upload = [&](const Tensor& t, bool grad) {
    Tensor g = Tensor::empty(t.shape(), dtype, Device::cuda(0));
    copy_(g, t);
    if (grad) g.set_requires_grad(true);
    return g;
  };
  const cuda::GemmBiasCounts before = cuda::gemm_bias_counts();
  const Tensor gx = upload(x, true), gw = upload(w, true), gb = upload(b, true);
  const Tensor y = linear(gx, gw, gb);
  backward(y, upload(dy, false));
  const cuda::GemmBiasCounts after = cuda::gemm_bias_counts();
  return {y.detach(), gx.grad(), gw.grad(), gb.grad(),
          {after.bias - before.bias, after.bias_grad - before.bias_grad, after.declined - before.declined}};
}

// The epilogue path against the fallback on the same inputs. `aligned`: sizes on the 16 grid, where cuBLASLt is
// expected to take both epilogues in bf16, the training dtype (the test fails if it declines there: the step
// would run the slow path); a decline elsewhere (f32, odd sizes) is legitimate and only reported.
void compare_paths(const char* name, const Shape& x_shape, int64_t out_features, bool aligned) {
  const int64_t in_features = x_shape.back();
  Shape dy_shape = x_shape;
  dy_shape.back() = out_features;
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(name << " " << dtype_name(dtype) << ", seed " << seed);
    const Tensor x = random_tensor(x_shape, seed, DType::f32);
    const Tensor w = random_tensor({out_features, in_features}, seed + 1, DType::f32);
    const Tensor b = random_tensor({out_features}, seed + 2, DType::f32);
    const Tensor dy = random_tensor(dy_shape, seed + 3, DType::f32);
    Run fused, fallback;
    {
      const EpiloguesSwitch use(true);
      fused = run_on_gpu(x, w, b, dy, dtype);
    }
    {
      const EpiloguesSwitch use(false);
      fallback = run_on_gpu(x, w, b, dy, dtype);
    }
    // The fallback never reaches cuBLASLt: both its GEMMs with a bias are declined.
    CHECK(fallback.counts.bias == 0);
    CHECK(fallback.counts.bias_grad == 0);
    CHECK(fallback.counts.declined == 2);
    INFO("epilogue run: bias " << fused.counts.bias << ", bias grad " << fused.counts.bias_grad << ", declined "
                               << fused.counts.declined);
    if (aligned && dtype == DType::bf16) {
      CHECK(fused.counts.bias == 1);
      CHECK(fused.counts.bias_grad == 1);
    } else if (fused.counts.bias != 1 || fused.counts.bias_grad != 1) {
      WARN(name << " " << dtype_name(dtype) << ": cuBLASLt declined an epilogue (bias " << fused.counts.bias
                << ", bias grad " << fused.counts.bias_grad << "): the fallback ran, so both sides are the same path");
    }
    const double tolerance = tolerance_for(dtype);
    CHECK(relative_error(fused.y, fallback.y) <= tolerance);
    CHECK(relative_error(fused.dx, fallback.dx) <= tolerance);
    CHECK(relative_error(fused.dw, fallback.dw) <= tolerance);
    CHECK(relative_error(fused.db, fallback.db) <= tolerance);
    CHECK(fused.db.dtype() == dtype);
  }
}

}  // namespace

TEST_CASE("linear: CUDA matches CPU", "[cuda][linear]") {
  for (bool with_bias : {true, false}) {
    compare("[3, 37, 65] -> 129", {3, 37, 65}, 129, with_bias);
    compare("[65] -> 37", {65}, 37, with_bias);
  }
  compare("[301, 77] -> 45", {301, 77}, 45, true);
  compare("[2, 50, 130] -> 200", {2, 50, 130}, 200, true);
  compare("[512, 1024] -> 768", {512, 1024}, 768, true);
}

TEST_CASE("linear: CUDA matches CPU when some inputs do not require grad", "[cuda][linear]") {
  compare("bias without grad", {3, 37, 65}, 129, true, {true, true, false});
  compare("x without grad", {3, 37, 65}, 129, true, {false, true, true});
  compare("only the bias with grad", {301, 77}, 45, true, {false, false, true});
  compare("W without grad", {301, 77}, 45, true, {true, false, true});
}

TEST_CASE("linear: the bias epilogues and the fallback give the same results", "[cuda][linear]") {
  compare_paths("[256, 768] -> 768", {256, 768}, 768, true);
  compare_paths("[4, 64, 256] -> 1536", {4, 64, 256}, 1536, true);
  compare_paths("[301, 77] -> 45", {301, 77}, 45, false);
  compare_paths("[3, 37, 65] -> 129", {3, 37, 65}, 129, false);
}
