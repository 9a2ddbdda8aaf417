#pragma once
// Whether ops record the graph. Off inside NoGradGuard (evaluation, optimizer updates, inference).
namespace mgl::autograd {

bool grad_enabled();
void set_grad_enabled(bool enabled);

class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace mgl::autograd

namespace mgl {
using autograd::NoGradGuard;
}
