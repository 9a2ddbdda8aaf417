#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/random.h"

namespace mgl::autograd {

namespace {

// sum_k <w_k, outputs_k>, read on the host in f64.
double projected(const std::vector<Tensor>& outputs, const std::vector<std::vector<double>>& weights) {
  double total = 0.0;
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (weights[k].empty()) continue;
    const std::vector<double> values = outputs[k].to_vector<double>();
    for (size_t i = 0; i < values.size(); ++i) total += weights[k][i] * values[i];
  }
  return total;
}

}  // namespace

GradcheckResult gradcheck(const MultiFunction& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  // Private leaves: the caller's tensors and their .grad stay untouched.
  std::vector<Tensor> leaves;
  for (const Tensor& input : inputs) {
    if (!input.defined()) {
      leaves.push_back(input);
      continue;
    }
    MGL_CHECK(input.is_cpu() && (input.dtype() == DType::f64 || !input.requires_grad()),
              "gradcheck: inputs that require grad must be f64 CPU tensors, got ", input.describe());
    Tensor leaf = Tensor::empty(input.shape(), input.dtype(), input.device());
    copy_(leaf, input);
    leaf.set_requires_grad(input.requires_grad());
    leaves.push_back(leaf);
  }

  // Analytic gradients from one backward pass seeded with random projection weights.
  std::vector<Tensor> outputs = f(leaves);
  Generator gen(options.seed);
  std::vector<std::vector<double>> weights(outputs.size());
  std::vector<Tensor> roots, seeds;
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (!outputs[k].defined() || !outputs[k].requires_grad()) continue;
    MGL_CHECK(outputs[k].dtype() == DType::f64, "gradcheck: output ", k, " is ", outputs[k].describe(),
              "; run the function in f64");
    Tensor w = randn(outputs[k].shape(), DType::f64, Device::cpu(), gen);
    weights[k] = w.to_vector<double>();
    roots.push_back(outputs[k]);
    seeds.push_back(w);
  }
  MGL_CHECK(!roots.empty(), "gradcheck: no output requires grad");
  backward(roots, seeds);

  GradcheckResult result;
  std::ostringstream report;
  int mismatches = 0;
  NoGradGuard no_grad;
  for (size_t n = 0; n < leaves.size(); ++n) {
    const Tensor& leaf = leaves[n];
    if (!leaf.defined() || !leaf.requires_grad()) continue;
    const std::vector<double> analytic =
        leaf.grad().defined() ? leaf.grad().to_vector<double>() : std::vector<double>(leaf.numel(), 0.0);
    double* x = leaf.data<double>();  // leaves are fresh contiguous copies
    for (int64_t i = 0; i < leaf.numel(); ++i) {
      const double saved = x[i];
      // Written through the pointer: each write bumps the leaf's version (core/tensor.h, Storage).
      x[i] = saved + options.eps;
      leaf.bump_version();
      const double plus = projected(f(leaves), weights);
      x[i] = saved - options.eps;
      leaf.bump_version();
      const double minus = projected(f(leaves), weights);
      x[i] = saved;
      leaf.bump_version();
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double error = std::abs(analytic[i] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, error);
      ++result.checked;
      if (!(error <= options.atol + options.rtol * std::abs(numeric))) {  // NaN fails too
        result.ok = false;
        if (mismatches++ < 8)
          report << "input " << n << " " << leaf.describe() << " element " << i << ": analytic " << analytic[i]
                 << ", numeric " << numeric << "\n";
      }
    }
  }
  if (mismatches > 8) report << "... " << mismatches - 8 << " more mismatches\n";
  result.report = report.str();
  return result;
}

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  return gradcheck(MultiFunction([&](const std::vector<Tensor>& xs) { return std::vector<Tensor>{f(xs)}; }), inputs,
                   options);
}

}  // namespace mgl::autograd
