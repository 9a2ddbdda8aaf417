#pragma once
// Tensor: a cheap handle (shared_ptr) to a TensorImpl, which is a strided view of a Storage plus
// the autograd fields. Views share storage. This class holds data and metadata only: the math
// lives in ops/ as free functions (mgl::add, mgl::matmul, ...), so core/ depends on nothing above.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/error.h"
#include "core/device.h"
#include "core/shape.h"

namespace mgl {

namespace autograd {
class Node;
}
namespace nn {
struct ComputeCopy;
}

// A block of bytes on one device, freed (returned to the allocator) with its last tensor.
//
// `version` counts the writes into the storage after it was created (PyTorch's version counter, shared by
// every view as the storage is): copy_, fill_, add_ and the random fills (core/random.h) bump it, and so do
// the other writers of parameters and of gradcheck's inputs, which write through the pointer (the
// optimizers' kernels, ZeRO's all-gather, gradcheck's perturbations: Tensor::bump_version). A value derived
// from a tensor and cached is current while the storage and its version are the ones it was derived from:
// the compute copies of parameters (nn/compute_copy.h) rely on it. Other raw writes into existing tensors
// (a communicator's output, gradient clipping) do not bump it: nothing caches a value derived from those.
struct Storage {
  Storage(const Device& device, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  uint64_t version = 0;
};

struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (e.g. "no gradient")
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (uninitialised, or filled) -------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());
  // Copies host values into a new tensor of `shape` (values converted to `dtype`).
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype = dtype_of<T>(),
                            Device device = Device::cpu());

  // ---- metadata -------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t numel() const;
  int64_t offset() const;  // in elements, into the storage
  DType dtype() const;
  Device device() const;
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype()); }
  std::string describe() const;  // "f32[2, 3] on cuda:0", used in error messages

  // ---- data access ----------------------------------------------------------------------------
  void* raw_data() const;  // pointer to element 0 of this view
  template <class T>
  T* data() const {
    MGL_CHECK(dtype() == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">() called on ", describe());
    return static_cast<T*>(raw_data());
  }
  // Values in row-major order, copied to the host and converted to T (synchronises).
  template <class T>
  std::vector<T> to_vector() const;
  double item() const;  // the single value of a one-element tensor

  // A new view of the same storage (no autograd; ops/ wraps views with their backward).
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  const std::shared_ptr<Storage>& storage() const;
  // The storage's write count (Storage::version); bump_version() after writing through raw_data().
  uint64_t version() const { return storage()->version; }
  void bump_version() const { ++storage()->version; }

  // ---- autograd fields (the behaviour lives in autograd/) -------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool required);  // only on leaves
  Tensor grad() const;                       // undefined until a backward pass reaches this leaf
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  Tensor detach() const;  // same storage, cut from the graph
  // Called with the leaf after its .grad is final for this backward pass (all contributions
  // summed). Data-parallel training starts the gradient all-reduce from here.
  void register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // elements
  Shape shape;
  Shape strides;  // elements
  DType dtype = DType::f32;

  // autograd
  bool requires_grad = false;
  std::shared_ptr<autograd::Node> grad_fn;  // the node that produced this tensor (null for leaves)
  int output_nr = 0;                        // which output of grad_fn this tensor is
  // Leaves: the node that adds into .grad (it points back weakly, so there is no cycle).
  std::shared_ptr<autograd::Node> grad_accumulator;
  std::shared_ptr<TensorImpl> grad;
  std::vector<std::function<void(const Tensor&)>> post_accumulate_grad_hooks;

  // Parameters: the cached cast to the compute dtype (the behaviour lives in nn/compute_copy.h).
  std::shared_ptr<nn::ComputeCopy> compute_copy;
};

// Raw, non-differentiable building blocks that core itself needs (copies between devices and
// dtypes, fills, gradient accumulation). Everything else is an op in ops/.
void copy_(const Tensor& destination, const Tensor& source);  // same shape; any dtypes/devices
void fill_(const Tensor& destination, double value);
void add_(const Tensor& destination, const Tensor& source);  // destination += source, same shape

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, DType dtype, Device device) {
  MGL_CHECK(static_cast<int64_t>(values.size()) == mgl::numel(shape), "from_vector: ", values.size(),
            " values for shape ", shape_str(shape));
  Tensor host = empty(shape, dtype_of<T>(), Device::cpu());
  std::copy(values.begin(), values.end(), host.data<T>());
  if (dtype == dtype_of<T>() && device.is_cpu()) return host;
  Tensor out = empty(shape, dtype, device);
  copy_(out, host);
  return out;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = empty(shape(), dtype_of<T>(), Device::cpu());
  copy_(host, *this);
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}

}  // namespace mgl
