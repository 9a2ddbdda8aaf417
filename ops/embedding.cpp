// embedding: y[i..., :] = weight[ids[i...], :], a gather of rows of weight [vocab, dim].
// Backward: dweight[v, :] = sum over the positions i with ids[i] = v of dy[i, :] (a scatter-add);
// the ids get no gradient.
//
// The ids are read on the host once, in the forward, to check that each lies in [0, vocab). The
// backward reuses that host copy to group the positions by id (a stable sort), so both the CPU loop
// and the CUDA kernel add each row's contributions in increasing position order: the gradient is
// deterministic, identical run to run, and repeated ids need no atomics. Ids may be on the weight's
// device or on the CPU: CPU ids (a training batch) are read for free and uploaded without a wait
// (core/host_upload.h), so a CUDA step never waits for the device here; CUDA ids are copied to the host.
#include <algorithm>
#include <numeric>

#include "autograd/node.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/embedding.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

namespace {

// "[1, 2]": the multi-index of row-major position `flat` in `shape`, for error messages.
std::string position_str(int64_t flat, const Shape& shape) {
  Shape index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_str(index);
}

// The positions of the ids grouped by id: group g is id rows[g], found at the positions
// positions[starts[g]] .. positions[starts[g + 1] - 1], in increasing order.
struct IdGroups {
  std::vector<int64_t> rows, starts, positions;
};

IdGroups group_by_id(const std::vector<int64_t>& ids) {
  IdGroups groups;
  groups.positions.resize(ids.size());
  std::iota(groups.positions.begin(), groups.positions.end(), int64_t{0});
  std::stable_sort(groups.positions.begin(), groups.positions.end(),
                   [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  for (size_t k = 0; k < groups.positions.size(); ++k) {
    const int64_t id = ids[groups.positions[k]];
    if (groups.rows.empty() || groups.rows.back() != id) {
      groups.rows.push_back(id);
      groups.starts.push_back(static_cast<int64_t>(k));
    }
  }
  groups.starts.push_back(static_cast<int64_t>(ids.size()));
  return groups;
}

void gather_cpu(const Tensor& weight, const std::vector<int64_t>& ids, const Tensor& out) {
  const int64_t dim = weight.size(1), row_stride = weight.stride(0), col_stride = weight.stride(1);
  dispatch_floating(weight.dtype(), "embedding", [&](auto tag) {
    using T = decltype(tag);
    const T* w = static_cast<const T*>(weight.raw_data());
    T* o = out.data<T>();
    for (int64_t r = 0; r < static_cast<int64_t>(ids.size()); ++r)
      for (int64_t c = 0; c < dim; ++c) o[r * dim + c] = w[ids[r] * row_stride + c * col_stride];
  });
}

// dweight rows named by the groups = sums of the rows of dy ([count, dim], contiguous).
void scatter_add_cpu(const Tensor& dy, const IdGroups& groups, const Tensor& dweight) {
  const int64_t dim = dweight.size(1);
  dispatch_floating(dy.dtype(), "embedding backward", [&](auto tag) {
    using T = decltype(tag);
    using M = typename compute_type<T>::type;
    const T* g = dy.data<T>();
    T* dw = dweight.data<T>();
    std::vector<M> acc(dim);
    for (size_t n = 0; n < groups.rows.size(); ++n) {
      std::fill(acc.begin(), acc.end(), M(0));
      for (int64_t k = groups.starts[n]; k < groups.starts[n + 1]; ++k)
        for (int64_t c = 0; c < dim; ++c) acc[c] += static_cast<M>(g[groups.positions[k] * dim + c]);
      for (int64_t c = 0; c < dim; ++c) dw[groups.rows[n] * dim + c] = T(acc[c]);
    }
  });
}

void scatter_add_cuda(const Tensor& dy, const IdGroups& groups, const Tensor& dweight) {
  // One upload of [rows | starts | positions].
  std::vector<int64_t> packed(groups.rows);
  packed.insert(packed.end(), groups.starts.begin(), groups.starts.end());
  packed.insert(packed.end(), groups.positions.begin(), groups.positions.end());
  const Tensor table = Tensor::from_vector(packed, {static_cast<int64_t>(packed.size())}, DType::i64, dy.device());
  cuda::EmbeddingBackwardArgs args;
  args.groups = static_cast<int64_t>(groups.rows.size());
  args.dim = dweight.size(1);
  args.dtype = dy.dtype();
  args.dy = dy.raw_data();
  args.rows = table.data<int64_t>();
  args.starts = args.rows + groups.rows.size();
  args.positions = args.starts + groups.starts.size();
  args.dweight = dweight.raw_data();
  DeviceGuard guard(dy.device());
  MGL_ON_CUDA(cuda::embedding_backward(args, compute_stream(dy.device())));
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  detail::check_floating("embedding", weight);
  MGL_CHECK(ids.defined(), "embedding: ids are an undefined tensor");
  MGL_CHECK(weight.dim() == 2, "embedding: weight must be [vocab, dim], got ", weight.describe());
  MGL_CHECK(is_integer(ids.dtype()), "embedding: ids must be i32 or i64, got ", ids.describe());
  MGL_CHECK(ids.device() == weight.device() || ids.is_cpu(), "embedding: ids ", ids.describe(), " and weight ",
            weight.describe(), " are on different devices (ids may also be on the CPU)");
  const int64_t vocab = weight.size(0), dim = weight.size(1);
  std::vector<int64_t> host_ids = ids.to_vector<int64_t>();
  for (size_t i = 0; i < host_ids.size(); ++i)
    MGL_CHECK(host_ids[i] >= 0 && host_ids[i] < vocab, "embedding: id ", host_ids[i], " at position ",
              position_str(static_cast<int64_t>(i), ids.shape()), " of ids ", ids.describe(), " is outside [0, ",
              vocab, ") for weight ", weight.describe());

  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  if (weight.is_cpu()) {
    gather_cpu(weight, host_ids, out);
  } else {
    const Tensor device_ids = contiguous(to(ids, weight.device()));
    DeviceGuard guard(weight.device());
    cuda::EmbeddingForwardArgs args;
    args.count = ids.numel();
    args.dim = dim;
    args.dtype = weight.dtype();
    args.weight = weight.raw_data();
    args.row_stride = weight.stride(0);
    args.col_stride = weight.stride(1);
    args.ids = device_ids.raw_data();
    args.id_dtype = device_ids.dtype();
    args.out = out.raw_data();
    MGL_ON_CUDA(cuda::embedding_forward(args, compute_stream(weight.device())));
  }

  autograd::record("embedding", {weight}, {out},
                   [shape = weight.shape(), dtype = weight.dtype(), device = weight.device(),
                    host_ids = std::move(host_ids)](const std::vector<Tensor>& g) {
                     const IdGroups groups = group_by_id(host_ids);
                     const Tensor dy = contiguous(g[0]);
                     Tensor dweight = Tensor::zeros(shape, dtype, device);
                     if (device.is_cpu()) scatter_add_cpu(dy, groups, dweight);
                     else scatter_add_cuda(dy, groups, dweight);
                     return std::vector<Tensor>{dweight};
                   });
  return out;
}

}  // namespace mgl
