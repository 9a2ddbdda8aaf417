#include "nn/grad_buckets.h"

namespace mgl::nn {

namespace {

// Re-points `t` (a contiguous leaf) at elements [offset, offset + numel) of `flat`, after copying its
// values there: the Tensor handle, and so every holder of it, sees the new storage.
void move_into(const Tensor& t, const Tensor& flat, int64_t offset) {
  const Tensor view = flat.as_strided(t.shape(), t.strides(), flat.offset() + offset);
  copy_(view, t);
  TensorImpl* impl = t.impl();
  impl->storage = flat.storage();
  impl->offset = view.offset();
}

}  // namespace

GradBuckets::GradBuckets(std::vector<Parameter> parameters, const dist::ProcessGroup& group, int64_t bucket_bytes,
                         bool sharded)
    : parameters_(std::move(parameters)), group_(group), sharded_(sharded) {
  MGL_CHECK(bucket_bytes > 0, "parallel.bucket_mb must be > 0");
  MGL_CHECK(!parameters_.empty(), "GradBuckets: no parameters");
  const Device device = parameters_[0].tensor.device();
  for (const Parameter& p : parameters_)
    MGL_CHECK(p.tensor.dtype() == DType::f32 && p.tensor.is_contiguous() && p.tensor.device() == device,
              "data parallel: parameter '", p.name, "' is ", p.tensor.describe(),
              "; gradients are reduced for contiguous f32 master weights on one device");

  // Reverse order: the last layers' gradients are final first.
  const int64_t bucket_elements = std::max<int64_t>(1, bucket_bytes / 4);
  GradBucket current;
  auto close = [&] {
    if (current.members.empty()) return;
    const int64_t size = group_.size();
    current.numel = (current.numel + size - 1) / size * size;
    buckets_.push_back(std::move(current));
    current = GradBucket();
  };
  for (size_t i = parameters_.size(); i-- > 0;) {
    const int64_t n = parameters_[i].tensor.numel();
    if (!current.members.empty() && current.numel + n > bucket_elements) close();
    current.members.push_back(i);
    current.offsets.push_back(current.numel);
    current.numel += n;
  }
  close();

  for (size_t k = 0; k < buckets_.size(); ++k) {
    GradBucket& b = buckets_[k];
    b.grad = Tensor::zeros({b.numel}, DType::f32, device);
    if (sharded_) {
      b.shard = Tensor::zeros({b.shard_size(group_.size())}, DType::f32, device);
      b.values = Tensor::zeros({b.numel}, DType::f32, device);
      for (size_t m = 0; m < b.members.size(); ++m) move_into(parameters_[b.members[m]].tensor, b.values, b.offsets[m]);
    }
    for (size_t m = 0; m < b.members.size(); ++m)
      parameters_[b.members[m]].tensor.register_post_accumulate_grad_hook([this, k](const Tensor&) { on_ready(k); });
  }
  zero_grad();
}

void GradBuckets::zero_grad() {
  for (GradBucket& b : buckets_) {
    MGL_CHECK(!b.work, "GradBuckets::zero_grad while a reduction is in flight (call finish first)");
    fill_(b.grad, 0.0);
    b.ready = 0;
    for (size_t m = 0; m < b.members.size(); ++m) {
      const Tensor& p = parameters_[b.members[m]].tensor;
      p.set_grad(b.grad.as_strided(p.shape(), p.strides(), b.offsets[m]));
    }
  }
  next_launch_ = 0;
}

void GradBuckets::on_ready(size_t bucket) {
  if (!sync_) return;
  GradBucket& b = buckets_[bucket];
  if (++b.ready == static_cast<int>(b.members.size())) launch_ready();
}

void GradBuckets::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready >= static_cast<int>(buckets_[next_launch_].members.size()))
    launch(buckets_[next_launch_++]);
}

void GradBuckets::launch(GradBucket& b) {
  dist::Communicator& comm = group_.on(b.grad.device());
  b.work = sharded_ ? comm.reduce_scatter(b.grad, b.shard) : comm.all_reduce(b.grad, dist::ReduceOp::sum);
}

void GradBuckets::finish() {
  while (next_launch_ < buckets_.size()) launch(buckets_[next_launch_++]);
  for (GradBucket& b : buckets_) {
    if (b.work) b.work->wait();
    b.work.reset();
  }
}

}  // namespace mgl::nn
