#include "dist/communicator.h"

namespace mgl::dist {

namespace {
class CompletedWork final : public Work {
 public:
  void wait() override {}
};
}  // namespace

WorkHandle completed_work() { return std::make_unique<CompletedWork>(); }

void Communicator::check_tensor(const char* op, const Tensor& t) const {
  MGL_CHECK(t.defined() && t.is_contiguous(), name_, " group ", op, ": expected a defined contiguous tensor, got ",
            t.defined() ? t.describe() : "undefined");
}

void Communicator::check_peer(const char* op, int peer) const {
  MGL_CHECK(peer >= 0 && peer < size_ && peer != rank_, name_, " group ", op, ": peer ", peer,
            " is not another rank of this group of ", size_, " (this rank is ", rank_, ")");
}

void Communicator::check_all_gather(const Tensor& in, const Tensor& out) const {
  check_tensor("all_gather", in);
  check_tensor("all_gather", out);
  MGL_CHECK(out.numel() == in.numel() * size_ && in.dtype() == out.dtype() && in.device() == out.device(), name_,
            " group all_gather: output ", out.describe(), " must hold ", size_, " x input ", in.describe());
}

void Communicator::check_reduce_scatter(const Tensor& in, const Tensor& out) const {
  check_tensor("reduce_scatter", in);
  check_tensor("reduce_scatter", out);
  MGL_CHECK(in.numel() == out.numel() * size_ && in.dtype() == out.dtype() && in.device() == out.device(), name_,
            " group reduce_scatter: input ", in.describe(), " must hold ", size_, " x output ", out.describe());
}

WorkHandle SelfCommunicator::all_reduce(const Tensor& t, ReduceOp) {
  check_tensor("all_reduce", t);
  return completed_work();
}
WorkHandle SelfCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  check_all_gather(in, out);
  copy_(out.as_strided(in.shape(), in.strides(), out.offset()), in);
  return completed_work();
}
WorkHandle SelfCommunicator::reduce_scatter(const Tensor& in, const Tensor& out) {
  check_reduce_scatter(in, out);
  copy_(out, in.as_strided(out.shape(), out.strides(), in.offset()));
  return completed_work();
}
WorkHandle SelfCommunicator::broadcast(const Tensor& t, int) {
  check_tensor("broadcast", t);
  return completed_work();
}
WorkHandle SelfCommunicator::send(const Tensor&, int peer, int) {
  check_peer("send", peer);
  return completed_work();
}
WorkHandle SelfCommunicator::recv(const Tensor&, int peer, int) {
  check_peer("recv", peer);
  return completed_work();
}

}  // namespace mgl::dist
