#include "nn/module.h"

#include <unordered_set>

namespace mgl::nn {

Shape Sharding::full_shape(const Shape& piece, int64_t group_size) const {
  MGL_CHECK(group_size >= 1, "Sharding: group size must be positive, got ", group_size);
  if (replicated()) return piece;
  MGL_CHECK(dim >= 0 && dim < static_cast<int64_t>(piece.size()), "Sharding: split dim ", dim,
            " out of range for a piece of shape ", shape_str(piece));
  Shape full = piece;
  full[dim] *= group_size;
  return full;
}

void Module::check_new_name(const std::string& name) const {
  MGL_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: invalid name '", name,
            "' (names are non-empty and contain no '.')");
  for (const Parameter& p : parameters_)
    MGL_CHECK(p.name != name, "Module: a parameter named '", name, "' is already registered");
  for (const auto& [child_name, child] : children_)
    MGL_CHECK(child_name != name, "Module: a submodule named '", name, "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor, Sharding sharding) {
  check_new_name(name);
  MGL_CHECK(tensor.defined(), "register_parameter: '", name, "' is an undefined tensor");
  MGL_CHECK(tensor.is_leaf(), "register_parameter: '", name, "' (", tensor.describe(),
            ") is the output of an op; register a leaf (detach() it)");
  MGL_CHECK(sharding.replicated() || (sharding.dim >= 0 && sharding.dim < tensor.dim()), "register_parameter: '",
            name, "' (", tensor.describe(), ") cannot be split along dim ", sharding.dim);
  tensor.set_requires_grad(true);
  parameters_.push_back({name, tensor, sharding});
  return tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  MGL_CHECK(module != nullptr, "register_module: '", name, "' is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, std::vector<Parameter>& out) const {
  for (const Parameter& p : parameters_) out.push_back({prefix + p.name, p.tensor, p.sharding});
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<Parameter> Module::named_parameters() const {
  std::vector<Parameter> all;
  collect("", all);
  std::vector<Parameter> unique;
  std::unordered_set<const TensorImpl*> seen;
  for (Parameter& p : all)
    if (seen.insert(p.tensor.impl()).second) unique.push_back(std::move(p));
  return unique;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (const Parameter& p : named_parameters()) out.push_back(p.tensor);
  return out;
}

void Module::zero_grad() const {
  for (const Parameter& p : named_parameters()) p.tensor.set_grad(Tensor());
}

void Module::train(bool training) {
  training_ = training;
  for (const auto& [name, child] : children_) child->train(training);
}

void replace_values(const Tensor& t, const Tensor& values, const Device& device) {
  Tensor fresh = Tensor::empty(values.shape(), t.dtype(), device);
  copy_(fresh, values);
  TensorImpl* impl = t.impl();
  impl->storage = fresh.storage();
  impl->offset = 0;
  impl->shape = fresh.shape();
  impl->strides = fresh.strides();
  impl->compute_copy.reset();  // cast from the old values, maybe on another device (nn/compute_copy.h)
}

void Module::to(const Device& device) const {
  for (const Parameter& p : named_parameters()) {
    if (p.tensor.device() == device) continue;
    replace_values(p.tensor, p.tensor, device);
    if (p.tensor.grad().defined()) replace_values(p.tensor.grad(), p.tensor.grad(), device);
  }
}

}  // namespace mgl::nn
