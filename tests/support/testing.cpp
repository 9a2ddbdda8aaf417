#include "support/testing.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>

#include "autograd/engine.h"
#include "ops/ops.h"

namespace mgl::testing {

namespace {
bool& gpu_flag() {
  static bool flag = false;
  return flag;
}
}  // namespace

bool gpu_tests_requested() { return gpu_flag(); }
RequestGpu::RequestGpu() { gpu_flag() = true; }

uint64_t fresh_seed() {
  static std::atomic<uint64_t> counter{0};
  const uint64_t now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return now * 6364136223846793005ULL + (++counter) * 1442695040888963407ULL;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype, double low, double high, Device device) {
  Generator gen(seed);
  Tensor t = Tensor::empty(shape, dtype, device);
  uniform_(t, low, high, gen);
  return t;
}

Tensor random_ids(const Shape& shape, int64_t vocab, uint64_t seed, DType dtype) {
  Generator gen(seed);
  Tensor u = rand(shape, DType::f64, Device::cpu(), gen);
  std::vector<double> values = u.to_vector<double>();
  std::vector<int64_t> ids(values.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = std::min<int64_t>(vocab - 1, static_cast<int64_t>(values[i] * vocab));
  return Tensor::from_vector(ids, shape, dtype);
}

void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                     const autograd::GradcheckOptions& options) {
  const autograd::GradcheckResult result = autograd::gradcheck(f, inputs, options);
  INFO(result.report);
  CHECK(result.checked > 0);
  CHECK(result.ok);
}

void check_gradients_multi(const autograd::MultiFunction& f, const std::vector<Tensor>& inputs,
                           const autograd::GradcheckOptions& options) {
  const autograd::GradcheckResult result = autograd::gradcheck(f, inputs, options);
  INFO(result.report);
  CHECK(result.checked > 0);
  CHECK(result.ok);
}

double relative_error(const Tensor& out, const Tensor& ref) {
  MGL_CHECK(out.shape() == ref.shape(), "relative_error: ", out.describe(), " vs ", ref.describe());
  return relative_error(out.to_vector<double>(), ref.to_vector<double>());
}

double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  MGL_CHECK(a.size() == b.size(), "relative_error: ", a.size(), " values vs ", b.size());
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  if (std::isnan(diff)) return INFINITY;
  return norm == 0.0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}


double tolerance_for(DType dtype) { return dtype == DType::bf16 ? 1e-2 : 1e-5; }

void check_cuda_matches_cpu(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, DType dtype,
                            const std::string& what) {
  std::string report;
  const double error = compare_cuda_to_cpu(
      [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0])}; }, {x}, dtype, &report);
  INFO(what << " " << dtype_name(dtype) << " on " << x.describe() << "\n" << report);
  CHECK(error <= tolerance_for(dtype));
}

bool same_bits(const Tensor& x, const Tensor& y) {
  if (x.dtype() != y.dtype() || x.shape() != y.shape()) return false;
  const Tensor hx = to(contiguous(x), Device::cpu()), hy = to(contiguous(y), Device::cpu());
  return std::memcmp(hx.raw_data(), hy.raw_data(), size_t(hx.numel()) * hx.element_size()) == 0;
}

std::vector<Tensor> aligned_offset_strided(const Tensor& host, const Device& device) {
  MGL_CHECK(host.dim() == 1, "aligned_offset_strided: expected a 1-D tensor, got ", host.describe());
  const int64_t n = host.numel();
  const Tensor aligned = Tensor::empty({n}, host.dtype(), device);
  const Tensor offset = Tensor::empty({n + 1}, host.dtype(), device).as_strided({n}, {1}, 1);
  const Tensor strided = Tensor::empty({2 * n}, host.dtype(), device).as_strided({n}, {2}, 0);
  for (const Tensor& t : {aligned, offset, strided}) copy_(t, host);
  return {aligned, offset, strided};
}

void check_layouts_give_same_bits(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                                  const std::vector<Tensor>& host, const Device& device,
                                  const std::vector<std::vector<int>>& layouts) {
  std::vector<std::vector<Tensor>> held;  // per input: aligned, offset, strided
  for (const Tensor& values : host) held.push_back(aligned_offset_strided(values, device));
  auto inputs = [&](const std::vector<int>& which) {
    std::vector<Tensor> in;
    for (size_t k = 0; k < held.size(); ++k) in.push_back(held[k].at(size_t(which.at(k))));
    return in;
  };
  const std::vector<Tensor> reference = f(inputs(std::vector<int>(held.size(), 2)));
  for (const std::vector<int>& which : layouts) {
    std::string name;
    for (int w : which) name += std::to_string(w);
    INFO("layouts " << name);
    const std::vector<Tensor> got = f(inputs(which));
    REQUIRE(got.size() == reference.size());
    for (size_t k = 0; k < got.size(); ++k) {
      INFO("output " << k);
      CHECK(same_bits(got[k], reference[k]));
    }
  }
}

std::vector<Tensor> value_and_grads(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                    const std::vector<Tensor>& inputs, const Tensor& dy) {
  std::vector<Tensor> leaves;
  for (const Tensor& x : inputs) leaves.push_back(x.detach().set_requires_grad(true));
  const Tensor y = f(leaves);
  std::vector<Tensor> out{y.detach()};
  for (const Tensor& g : autograd::grad({y}, {dy}, leaves)) out.push_back(g);
  return out;
}

namespace {
// Copies inputs to `device`; floating ones are cast to `dtype` and keep requires_grad.
std::vector<Tensor> prepare(const std::vector<Tensor>& inputs, const Device& device, DType dtype) {
  std::vector<Tensor> out;
  for (const Tensor& x : inputs) {
    if (!x.defined()) {
      out.push_back(x);
      continue;
    }
    const DType target = is_floating(x.dtype()) ? dtype : x.dtype();
    Tensor y = Tensor::empty(x.shape(), target, device);
    copy_(y, x);
    if (x.requires_grad()) y.set_requires_grad(true);
    out.push_back(y);
  }
  return out;
}
}  // namespace

double compare_cuda_to_cpu(const autograd::MultiFunction& f, const std::vector<Tensor>& inputs, DType dtype,
                           std::string* report, DType reference) {
  // The CPU reference runs in `reference` (f64 by default) on the inputs after rounding to `dtype`, so only the computation
  // differs, and the reference is accurate well beyond f32: the error measured is the GPU's own.
  std::vector<Tensor> rounded;
  for (const Tensor& x : inputs) {
    if (!x.defined() || !is_floating(x.dtype())) {
      rounded.push_back(x);
      continue;
    }
    Tensor r = Tensor::empty(x.shape(), DType::f32);
    copy_(r, cast(cast(x.detach(), dtype), DType::f32));
    if (x.requires_grad()) r.set_requires_grad(true);
    rounded.push_back(r);
  }
  const std::vector<Tensor> cpu_inputs = prepare(rounded, Device::cpu(), reference);
  const std::vector<Tensor> gpu_inputs = prepare(rounded, Device::cuda(0), dtype);
  const std::vector<Tensor> cpu_outputs = f(cpu_inputs);
  const std::vector<Tensor> gpu_outputs = f(gpu_inputs);
  MGL_CHECK(cpu_outputs.size() == gpu_outputs.size(), "compare_cuda_to_cpu: output counts differ");

  std::ostringstream lines;
  double worst = 0.0;
  auto note = [&](const std::string& what, const Tensor& gpu, const Tensor& cpu) {
    const double e = relative_error(gpu, cpu);
    worst = std::max(worst, e);
    lines << what << " " << cpu.describe() << ": relative error " << e << "\n";
  };
  std::vector<Tensor> cpu_roots, gpu_roots, cpu_seeds, gpu_seeds;
  Generator gen(fresh_seed());
  for (size_t k = 0; k < cpu_outputs.size(); ++k) {
    note("output " + std::to_string(k), gpu_outputs[k], cpu_outputs[k]);
    if (!cpu_outputs[k].requires_grad()) continue;
    // The same seed gradient on both sides: drawn, rounded to the GPU output's dtype, widened for the CPU.
    Tensor wg = Tensor::empty(gpu_outputs[k].shape(), gpu_outputs[k].dtype(), gpu_outputs[k].device());
    copy_(wg, randn(cpu_outputs[k].shape(), DType::f32, Device::cpu(), gen));
    Tensor w = Tensor::empty(cpu_outputs[k].shape(), cpu_outputs[k].dtype(), Device::cpu());
    copy_(w, wg);
    cpu_roots.push_back(cpu_outputs[k]);
    gpu_roots.push_back(gpu_outputs[k]);
    cpu_seeds.push_back(w);
    gpu_seeds.push_back(wg);
  }
  if (!cpu_roots.empty()) {
    autograd::backward(cpu_roots, cpu_seeds);
    autograd::backward(gpu_roots, gpu_seeds);
    for (size_t n = 0; n < inputs.size(); ++n) {
      if (!cpu_inputs[n].defined() || !cpu_inputs[n].requires_grad()) continue;
      MGL_CHECK(gpu_inputs[n].grad().defined() == cpu_inputs[n].grad().defined(),
                "compare_cuda_to_cpu: gradient of input ", n, " defined on one device only");
      if (cpu_inputs[n].grad().defined())
        note("grad of input " + std::to_string(n), gpu_inputs[n].grad(), cpu_inputs[n].grad());
    }
  }
  if (report) *report = lines.str();
  return worst;
}

}  // namespace mgl::testing
