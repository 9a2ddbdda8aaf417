#pragma once
// Module: what every layer and model is built from. A module owns an ordered list of named
// parameters and an ordered list of named submodules; named_parameters() walks them and produces
// the dotted names of the state_dict ("layers.0.fc1.weight"), on which checkpoints, the optimizer's
// state and tensor-parallel gathering all key.
//
// Modules hold Tensor handles, and the forward of each layer is an ordinary (non-virtual) member
// function with the signature that layer needs.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mgl::nn {

// How a parameter is laid out over the ranks of a tensor-parallel group: cut along `dim` into equal
// contiguous pieces, piece r on rank r (a column-parallel weight [out, in] is split along 0, a
// row-parallel one along 1), or replicated, every rank holding all of it (norm weights).
struct Sharding {
  static constexpr int64_t kReplicated = -1;
  int64_t dim = kReplicated;

  bool replicated() const { return dim == kReplicated; }
  // The shape of the whole parameter, given the shape of one rank's piece.
  Shape full_shape(const Shape& piece, int64_t group_size) const;
};

// A trainable tensor, its name (dotted, relative to the module asked) and its sharding.
struct Parameter {
  std::string name;
  Tensor tensor;
  Sharding sharding;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Copies would share parameter tensors by accident; modules are held by shared_ptr instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Adds a parameter (a leaf tensor, marked requires_grad here) under `name` and returns it.
  Tensor register_parameter(const std::string& name, Tensor tensor, Sharding sharding = {});
  // Adds a submodule under `name`; its parameters are listed as "name.<their names>".
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // This module's parameters in registration order, then each submodule's (depth first, in
  // registration order) under "child." prefixes. A tensor registered in several places (tied
  // weights) is listed once, under the first name reached.
  std::vector<Parameter> named_parameters() const;
  std::vector<Tensor> parameters() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  // Drops every parameter's .grad; the next backward allocates a fresh one.
  void zero_grad() const;

  // Training mode (dropout active, ...) for this module and all submodules.
  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter (and its .grad) to `device` in place: each parameter keeps its Tensor
  // handle, now pointing at new storage on `device`, so handles held elsewhere (by an optimizer,
  // by a hook) stay valid. Views taken earlier (detach(), slices) still see the old storage.
  // Build optimizers after moving: their state tensors are not moved.
  void to(const Device& device) const;

 private:
  void check_new_name(const std::string& name) const;
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, std::vector<Parameter>& out) const;

  std::vector<Parameter> parameters_;  // names relative to this module
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Puts a module (and its submodules) in eval mode for the guard's lifetime and puts back the mode
// it had before (train or eval) when the scope ends, also when an exception leaves it:
//
//   { EvalModeGuard eval(model); ...score the validation split... }  // training again here
//
// The restored mode is the module's own is_training(), applied to the whole tree by train(bool).
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Module& module) : module_(module), was_training_(module.is_training()) { module_.eval(); }
  ~EvalModeGuard() { module_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  Module& module_;
  bool was_training_;
};

// Repoints t's TensorImpl at a contiguous copy of `values` on `device` (their shape, t's dtype):
// every handle to t sees the new values, so an optimizer or a hook holding t stays valid. Module::to
// moves parameters this way, and tensor parallelism cuts them to their pieces (nn/tensor_parallel.h).
void replace_values(const Tensor& t, const Tensor& values, const Device& device);

// An ordered list of submodules named "0", "1", ... (the "layers" of "layers.0.fc1.weight").
template <class M>
class ModuleList : public Module {
 public:
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(module)));
    return items_.back();
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace mgl::nn
