// reshape: the same elements in row-major order under a new shape. A view whenever the new shape
// can be expressed with strides over x's memory (always for contiguous x, and for a non-contiguous
// x when each group of old dims that merges or splits is itself contiguous), a copy otherwise.
// Backward: dx = reshape(dy, x.shape).
// unsqueeze / squeeze are reshapes that add or drop a size-1 dim (always views).
#include <optional>

#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

namespace {

Shape infer_shape(const Tensor& x, Shape shape) {
  int64_t known = 1, infer = -1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1) {
      MGL_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(d);
    } else {
      MGL_CHECK(shape[d] >= 0, "reshape: invalid size in ", shape_str(shape));
      known *= shape[d];
    }
  }
  if (infer >= 0) {
    MGL_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot infer -1 in ", shape_str(shape), " for ", x.describe());
    shape[infer] = x.numel() / known;
  }
  MGL_CHECK(numel(shape) == x.numel(), "reshape: ", x.describe(), " has ", x.numel(), " elements, shape ",
            shape_str(shape), " needs ", numel(shape));
  return shape;
}

// Strides that read x's elements in row-major order under `shape`, if any exist. Walk x's dims from
// the last, cutting them into chunks whose dims are laid out contiguously relative to each other
// (stride[d] = stride[d + 1] * size[d + 1]); each chunk behaves like one flat dim of stride equal to its
// innermost stride, so the new dims must tile the chunks exactly: consecutive new dims whose sizes
// multiply to the chunk's element count, with strides built up from the chunk's base stride.
std::optional<Shape> view_strides(const Tensor& x, const Shape& shape) {
  Shape strides(shape.size());
  if (x.numel() == 0 || x.dim() == 0) return contiguous_strides(shape);  // any strides address nothing / one element
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t base_stride = x.stride(-1), chunk_numel = 1, view_numel = 1;
  for (int64_t d = x.dim() - 1; d >= 0; --d) {
    chunk_numel *= x.size(d);
    const bool chunk_ends = d == 0 || (x.size(d - 1) != 1 && x.stride(d - 1) != chunk_numel * base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < chunk_numel || shape[view_d] == 1)) {
      strides[view_d] = view_numel * base_stride;
      view_numel *= shape[view_d];
      --view_d;
    }
    if (view_numel != chunk_numel) return std::nullopt;
    if (d > 0) {
      base_stride = x.stride(d - 1);
      chunk_numel = view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return strides;
}

// y = x viewed with `shape`/`strides`, recorded as a reshape (its gradient is dy reshaped back).
Tensor reshaped_view(const Tensor& x, const Shape& shape, const Shape& strides) {
  Tensor y = x.as_strided(shape, strides, x.offset());
  autograd::record("reshape", {x}, {y}, [in_shape = x.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{reshape(g[0], in_shape)};
  });
  return y;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& requested) {
  MGL_CHECK(x.defined(), "reshape: input is an undefined tensor");
  const Shape shape = infer_shape(x, requested);
  if (shape == x.shape()) return x;
  if (const std::optional<Shape> strides = view_strides(x, shape)) return reshaped_view(x, shape, *strides);
  const Tensor source = contiguous(x);  // records its own node
  return reshaped_view(source, shape, contiguous_strides(shape));
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  Shape shape = x.shape();
  const int64_t d = normalize_dim(dim, x.dim() + 1, "unsqueeze");
  shape.insert(shape.begin() + d, 1);
  return reshape(x, shape);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.dim(), "squeeze");
  MGL_CHECK(x.size(d) == 1, "squeeze: dim ", dim, " of ", x.describe(), " has size ", x.size(d), ", not 1");
  Shape shape = x.shape();
  shape.erase(shape.begin() + d);
  return reshape(x, shape);
}

}  // namespace mgl
