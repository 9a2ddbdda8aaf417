#pragma once
// Whether ops record the graph. Off inside NoGradGuard (evaluation, optimizer updates, inference,
// and every backward pass); back on inside EnableGradGuard (a backward that must record a graph,
// such as activation recomputation re-running a forward inside the backward sweep).
//
// Namespaces: what a user of the library writes lives in mgl, as PyTorch has torch.no_grad() and
// loss.backward() — grad mode and these guards here, mgl::backward(loss) in autograd/engine.h; the
// machinery of the graph (Node, record, the engine, gradcheck, recompute) lives in mgl::autograd.
namespace mgl {

bool grad_enabled();
void set_grad_enabled(bool enabled);

// Sets grad mode for its scope and restores the previous mode on exit.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : previous_(grad_enabled()) { set_grad_enabled(enabled); }
  ~GradModeGuard() { set_grad_enabled(previous_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

class EnableGradGuard : public GradModeGuard {
 public:
  EnableGradGuard() : GradModeGuard(true) {}
};

}  // namespace mgl
