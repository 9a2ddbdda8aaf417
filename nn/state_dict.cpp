#include "nn/state_dict.h"

#include "autograd/grad_mode.h"

namespace mgl::nn {

void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix, const TensorParallel& tp) {
  NoGradGuard no_grad;
  for (const Parameter& p : module.named_parameters()) {
    const std::string name = prefix + p.name;
    MGL_CHECK(file.contains(name), file.path(), ": parameter '", name, "' is missing");
    const Tensor stored = file.read(name);
    const Shape whole = p.sharding.full_shape(p.tensor.shape(), tp.size());
    MGL_CHECK(stored.shape() == whole, file.path(), ": parameter '", name, "' has shape ", shape_str(stored.shape()),
              ", the model expects ", shape_str(whole));
    copy_(p.tensor, piece_of(stored, p.sharding, tp.rank(), tp.size()));
  }
}

}  // namespace mgl::nn
