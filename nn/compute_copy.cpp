#include "nn/compute_copy.h"

#include "autograd/node.h"
#include "core/cuda_context.h"
#include "cuda/compute_copy.h"
#include "nn/multi_tensor.h"
#include "ops/ops.h"

namespace mgl::nn {

namespace {

bool cast_every_use = false;
int64_t casts = 0;

// The parameter's copy in `dtype` when it was cast from the parameter's present storage (at any version),
// else null (none yet, another dtype, or storage the parameter no longer has).
ComputeCopy* copy_from_storage(const Tensor& parameter, DType dtype) {
  ComputeCopy* c = parameter.impl()->compute_copy.get();
  return c && c->values.dtype() == dtype && c->source.lock() == parameter.storage() ? c : nullptr;
}

void make_current(ComputeCopy& c, const Tensor& parameter) {
  c.source = parameter.storage();
  c.version = parameter.version();
}

}  // namespace

Tensor compute_copy(const Tensor& parameter, DType dtype) {
  if (parameter.dtype() == dtype) return parameter;
  MGL_CHECK(parameter.is_leaf() && is_floating(parameter.dtype()) && is_floating(dtype), "compute_copy: ",
            parameter.describe(), " in ", dtype_name(dtype), ": expected a floating-point leaf (a parameter) and dtype");
  if (cast_every_use) {
    ++casts;
    return cast(parameter, dtype);
  }
  ComputeCopy* c = copy_from_storage(parameter, dtype);
  if (!c || c->version != parameter.version()) {  // stale: cast into a new tensor
    auto fresh = std::make_shared<ComputeCopy>();
    fresh->values = Tensor::empty(parameter.shape(), dtype, parameter.device());
    copy_(fresh->values, parameter);
    make_current(*fresh, parameter);
    c = fresh.get();
    parameter.impl()->compute_copy = std::move(fresh);
    ++casts;
  }
  // A new handle on the values, recorded as a node of its own per use (as each cast at use was): its
  // backward hands the gradient to the parameter's AccumulateGrad in the compute dtype.
  Tensor view = c->values.detach();
  autograd::record("compute_copy", {parameter}, {view},
                   [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return view;
}

CastEveryUseGuard::CastEveryUseGuard() : previous_(cast_every_use) { cast_every_use = true; }
CastEveryUseGuard::~CastEveryUseGuard() { cast_every_use = previous_; }

int64_t compute_copy_casts() { return casts; }

bf16* compute_copy_to_refresh(const Tensor& parameter) {
  ComputeCopy* c = copy_from_storage(parameter, DType::bf16);
  return c ? c->values.data<bf16>() : nullptr;
}

void finish_update(const std::vector<Tensor>& parameters) {
  // Only the copies that were current before the update may be marked current after it. The update writes
  // a copy only where it writes the master, and a step gated on a non-finite norm (step_unless_nonfinite,
  // decided on the device) writes neither: a copy already stale then (its parameter written since it was
  // cast, e.g. by copy_ or a checkpoint load) keeps its old values and must stay stale, else it would be
  // served in place of the parameter's present values. A stale copy the update did write is cast again at
  // its next use: one cast, never a wrong value.
  std::vector<ComputeCopy*> current;
  for (const Tensor& p : parameters) {
    ComputeCopy* c = copy_from_storage(p, DType::bf16);
    current.push_back(c && c->version == p.version() ? c : nullptr);
  }
  // All versions next: parameters sharing a storage (ZeRO's flat buffers) would otherwise outdate the
  // copies marked before them.
  for (const Tensor& p : parameters) p.bump_version();
  for (size_t i = 0; i < parameters.size(); ++i)
    if (current[i]) make_current(*current[i], parameters[i]);
}

void refresh_compute_copies(const std::vector<Tensor>& parameters) {
  std::vector<cuda::CastSpan> spans;
  std::vector<int64_t> counts;
  std::vector<std::pair<ComputeCopy*, Tensor>> refreshed;
  for (const Tensor& p : parameters) {
    ComputeCopy* c = copy_from_storage(p, DType::bf16);
    if (!c || c->version == p.version()) continue;
    MGL_CHECK(p.is_contiguous() && p.device() == parameters.front().device(), "refresh_compute_copies: ",
              p.describe(), " is not contiguous f32 on ", parameters.front().device().str());
    spans.push_back({p.data<float>(), c->values.data<bf16>(), p.numel()});
    counts.push_back(p.numel());
    refreshed.emplace_back(c, p);
  }
  if (spans.empty()) return;
  const Device device = parameters.front().device();
  if (device.is_cpu()) {
    for (const cuda::CastSpan& s : spans)
      for (int64_t k = 0; k < s.count; ++k) s.copy[k] = bf16(s.source[k]);
  } else {
    const MultiTensorTable<cuda::CastSpan> table(spans, counts, device);
    cuda::CastMultiArgs args;
    args.spans = table.slots();
    args.chunks = table.chunks();
    args.chunk_count = table.chunk_count();
    DeviceGuard guard(device);
    MGL_ON_CUDA(cuda::cast_to_bf16(args, compute_stream(device)));
  }
  for (auto& [c, p] : refreshed) make_current(*c, p);
}

}  // namespace mgl::nn
