#include "core/tensor.h"

#include <cstring>

#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/host_upload.h"
#include "core/strided.h"
#include "cuda/copy.h"
#ifdef MGL_WITH_CUDA
#include "base/cuda_check.h"
#endif

namespace mgl {

// ---- Storage ------------------------------------------------------------------------------------

Storage::Storage(const Device& device_, size_t bytes_) : bytes(bytes_), device(device_) {
  data = allocate_bytes(device, bytes);
}
Storage::~Storage() { free_bytes(device, data, bytes); }

// ---- factories ----------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) MGL_CHECK(s >= 0, "empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(device, static_cast<size_t>(mgl::numel(shape)) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_(t, value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

// ---- metadata -----------------------------------------------------------------------------------

const TensorImpl& Tensor::checked() const {
  MGL_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return *impl_;
}
const Shape& Tensor::shape() const { return checked().shape; }
const Shape& Tensor::strides() const { return checked().strides; }
int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[normalize_dim(d, dim(), "stride")]; }
int64_t Tensor::numel() const { return mgl::numel(shape()); }
int64_t Tensor::offset() const { return checked().offset; }
DType Tensor::dtype() const { return checked().dtype; }
Device Tensor::device() const { return checked().storage->device; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked().storage; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t d = shape().size(); d-- > 0;) {
    if (shape()[d] != 1 && strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " on " + device().str();
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data) + offset() * static_cast<int64_t>(element_size());
}

double Tensor::item() const {
  MGL_CHECK(numel() == 1, "item(): expected a one-element tensor, got ", describe());
  return to_vector<double>()[0];
}

Tensor Tensor::as_strided(const Shape& new_shape, const Shape& new_strides, int64_t new_offset) const {
  MGL_CHECK(new_shape.size() == new_strides.size(), "as_strided: shape ", shape_str(new_shape),
            " and strides ", shape_str(new_strides), " differ in rank");
  // The lowest and highest elements the view can reach must both lie inside the storage
  // (negative strides walk down from the offset, positive ones up).
  int64_t lowest = new_offset, highest = new_offset;
  for (size_t d = 0; d < new_shape.size(); ++d) {
    const int64_t reach = (new_shape[d] - 1) * new_strides[d];
    if (new_shape[d] > 0) (reach < 0 ? lowest : highest) += reach;
  }
  const int64_t capacity = static_cast<int64_t>(storage()->bytes / element_size());
  MGL_CHECK(new_offset >= 0 && (mgl::numel(new_shape) == 0 || (lowest >= 0 && highest < capacity)),
            "as_strided: view ", shape_str(new_shape), " strides ", shape_str(new_strides), " offset ", new_offset,
            " reaches outside storage of ", capacity, " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->offset = new_offset;
  impl->shape = new_shape;
  impl->strides = new_strides;
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

// ---- autograd fields ----------------------------------------------------------------------------

bool Tensor::requires_grad() const { return checked().requires_grad; }
Tensor& Tensor::set_requires_grad(bool required) {
  MGL_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can be marked (got the output of an op)");
  MGL_CHECK(!required || is_floating(dtype()), "set_requires_grad: ", describe(),
            " is not floating point and cannot have a gradient");
  impl_->requires_grad = required;
  return *this;
}
Tensor Tensor::grad() const { return Tensor(checked().grad); }
void Tensor::set_grad(const Tensor& grad) const {
  if (grad.defined())
    MGL_CHECK(grad.shape() == shape() && grad.device() == device(), "set_grad: gradient ", grad.describe(),
              " does not match ", describe());
  impl_->grad = grad.impl_ptr();
}
const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const { return checked().grad_fn; }
Tensor Tensor::detach() const { return as_strided(shape(), strides(), offset()); }
void Tensor::register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const {
  MGL_CHECK(is_leaf() && requires_grad(), "register_post_accumulate_grad_hook: ", describe(),
            " is not a leaf that requires grad");
  impl_->post_accumulate_grad_hooks.push_back(std::move(hook));
}

// ---- layouts ------------------------------------------------------------------------------------

cuda::Layout layout_of(const Shape& shape, const std::vector<int64_t>& strides) {
  MGL_CHECK(shape.size() <= static_cast<size_t>(cuda::kMaxDims), "tensor of rank ", shape.size(),
            " exceeds the kernels' limit of ", cuda::kMaxDims, " dims");
  cuda::Layout layout;
  layout.rank = static_cast<int>(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    layout.shape[d] = shape[d];
    layout.strides[d] = strides[d];
  }
  return layout;
}
cuda::Layout layout_of(const Tensor& t) { return layout_of(t.shape(), t.strides()); }

// ---- raw copy / fill / accumulate -----------------------------------------------------------------

namespace {

template <class Dst, class Src>
Dst convert(Src v) {
  if constexpr (std::is_same_v<Dst, bf16>) return bf16(static_cast<float>(v));
  else if constexpr (std::is_same_v<Src, bf16>) return static_cast<Dst>(static_cast<float>(v));
  else return static_cast<Dst>(v);
}

// The CPU loop shared by copy_ and add_: walks two same-shaped CPU tensors element by element
// (any strides, any dtypes, dispatched once) and calls op(d, s) with a reference to each element
// of `dst` and the value of the element of `src` at the same index, each in its stored type.
template <class Op>
void cpu_zip(const Tensor& dst, const Tensor& src, Op op) {
  dispatch_all(dst.dtype(), [&](auto dst_tag) {
    dispatch_all(src.dtype(), [&](auto src_tag) {
      using Dst = decltype(dst_tag);
      using Src = decltype(src_tag);
      Dst* d = static_cast<Dst*>(dst.raw_data());
      const Src* s = static_cast<const Src*>(src.raw_data());
      for_each_offset<2>(dst.shape(), {dst.strides(), src.strides()}, [&](const auto& o) { op(d[o[0]], s[o[1]]); });
    });
  });
}

// dst = src, converted to dst's dtype.
void cpu_copy(const Tensor& dst, const Tensor& src) {
  cpu_zip(dst, src, [](auto& d, auto s) { d = convert<std::remove_reference_t<decltype(d)>>(s); });
}

// dst += src, summed in double and rounded once to dst's dtype.
void cpu_add(const Tensor& dst, const Tensor& src) {
  cpu_zip(dst, src, [](auto& d, auto s) {
    d = convert<std::remove_reference_t<decltype(d)>>(convert<double>(d) + convert<double>(s));
  });
}

// The kernels' view of copy_ and add_ on one device: every element of src into (or onto) dst.
cuda::CopyArgs copy_args(const Tensor& dst, const Tensor& src) {
  cuda::CopyArgs args;
  args.count = dst.numel();
  args.dst = dst.raw_data();
  args.dst_dtype = dst.dtype();
  args.dst_layout = layout_of(dst);
  args.src = src.raw_data();
  args.src_dtype = src.dtype();
  args.src_layout = layout_of(src);
  return args;
}

#ifdef MGL_WITH_CUDA
// A contiguous copy of `t` on its own device, in its own dtype (no-op if already contiguous).
Tensor contiguous_copy(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_(out, t);
  return out;
}
#endif

}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  MGL_CHECK(dst.shape() == src.shape(), "copy_: destination ", dst.describe(), " and source ",
            src.describe(), " differ in shape");
  if (dst.numel() == 0) return;
  dst.bump_version();
  if (dst.device() == src.device()) {
    if (dst.is_cpu()) return cpu_copy(dst, src);
    DeviceGuard guard(dst.device());
    MGL_ON_CUDA(cuda::strided_copy(copy_args(dst, src), compute_stream(dst.device())));
    return;
  }
#ifdef MGL_WITH_CUDA
  // Across devices: bring a contiguous copy of the source's bytes over, then convert/scatter on
  // the destination device. Host-bound copies synchronise, so the host can read the result; uploads do not.
  const Tensor packed = contiguous_copy(src);
  Tensor staged = Tensor::empty(src.shape(), src.dtype(), dst.device());
  const size_t bytes = static_cast<size_t>(packed.numel()) * packed.element_size();
  if (src.is_cuda() && dst.is_cuda()) {
    synchronize(src.device());
    DeviceGuard guard(dst.device());
    MGL_CUDA_CHECK(cudaMemcpyPeerAsync(staged.raw_data(), dst.device().index, packed.raw_data(),
                                       src.device().index, bytes, compute_stream(dst.device())));
    // `packed` is freed in the source device's stream order, which knows nothing of this copy.
    synchronize(dst.device());
  } else if (src.is_cuda()) {
    DeviceGuard guard(src.device());
    MGL_CUDA_CHECK(cudaMemcpyAsync(staged.raw_data(), packed.raw_data(), bytes, cudaMemcpyDeviceToHost,
                                   compute_stream(src.device())));
    synchronize(src.device());
  } else {
    // Through a pinned block (core/host_upload.h): the host does not wait, and `packed` may go at once.
    upload(staged.raw_data(), packed.raw_data(), bytes, dst.device());
  }
  copy_(dst, staged);
#else
  require_cuda(dst.is_cuda() ? dst.device() : src.device(), "copy_");
#endif
}

void fill_(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  dst.bump_version();
  if (dst.is_cpu()) {
    dispatch_all(dst.dtype(), [&](auto tag) {
      using T = decltype(tag);
      T* d = static_cast<T*>(dst.raw_data());
      const T v = convert<T>(value);
      for_each_offset<1>(dst.shape(), {dst.strides()}, [&](const auto& o) { d[o[0]] = v; });
    });
    return;
  }
  require_cuda(dst.device(), "fill_");
  cuda::FillArgs args;
  args.count = dst.numel();
  args.dtype = dst.dtype();
  args.dst = dst.raw_data();
  args.layout = layout_of(dst);
  args.value = value;
  DeviceGuard guard(dst.device());
  MGL_ON_CUDA(cuda::fill(args, compute_stream(dst.device())));
}

void add_(const Tensor& dst, const Tensor& src) {
  MGL_CHECK(dst.shape() == src.shape() && dst.device() == src.device(), "add_: destination ", dst.describe(),
            " and source ", src.describe(), " differ in shape or device");
  if (dst.numel() == 0) return;
  dst.bump_version();
  if (dst.is_cpu()) return cpu_add(dst, src);
  DeviceGuard guard(dst.device());
  MGL_ON_CUDA(cuda::accumulate(copy_args(dst, src), compute_stream(dst.device())));
}

}  // namespace mgl
