#include "nn/state_dict.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/grad_clip.h"

namespace mgl::nn {

void load_parameters(const Module& module, const Hdf5File& file, const std::string& prefix, const TensorParallel& tp) {
  NoGradGuard no_grad;
  for (const Parameter& p : module.named_parameters()) {
    const std::string name = prefix + p.name;
    MGL_CHECK(file.contains(name), file.path(), ": parameter '", name, "' is missing");
    copy_(p.tensor, checked_piece(file.read(name), p, tp, file.path(), name, "parameter"));
  }
}

Tensor checked_piece(const Tensor& stored, const Parameter& p, const TensorParallel& tp, const std::string& source,
                     const std::string& name, const char* what) {
  const Shape shape = p.sharding.full_shape(p.tensor.shape(), tp.size());
  MGL_CHECK(stored.shape() == shape, source, ": ", what, " '", name, "' has shape ", shape_str(stored.shape()),
            ", the model expects ", shape_str(shape));
  MGL_CHECK(is_floating(stored.dtype()), source, ": ", what, " '", name, "' is stored as ",
            dtype_name(stored.dtype()), "; expected floating-point values");
  // One f64 sum of squares: NaN or inf in any element makes it non-finite.
  MGL_CHECK(std::isfinite(global_norm({stored}).norm().item()), source, ": ", what, " '", name, "' holds NaN or infinite values");
  return piece_of(stored, p.sharding, tp.rank(), tp.size());
}

}  // namespace mgl::nn
