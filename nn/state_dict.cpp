#include "nn/state_dict.h"

#include "autograd/grad_mode.h"

namespace mgl::nn {

void save_parameters(const Module& module, Hdf5File& file, const std::string& prefix) {
  for (const Parameter& p : module.named_parameters()) file.write(prefix + p.name, p.tensor);
}

void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix) {
  NoGradGuard no_grad;
  for (const Parameter& p : module.named_parameters()) {
    const std::string name = prefix + p.name;
    MGL_CHECK(file.contains(name), file.path(), ": parameter '", name, "' is missing");
    const Tensor stored = file.read(name);
    MGL_CHECK(stored.shape() == p.tensor.shape(), file.path(), ": parameter '", name, "' has shape ",
              shape_str(stored.shape()), ", the model expects ", shape_str(p.tensor.shape()));
    copy_(p.tensor, stored);
  }
}

}  // namespace mgl::nn
