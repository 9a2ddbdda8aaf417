#pragma once
// Embedding: a lookup table W [num_embeddings, dim]; ids of any shape -> [ids..., dim].
#include "nn/init.h"
#include "nn/module.h"

namespace mgl::nn {

class Embedding : public Module {
 public:
  // W ~ normal(0, std) truncated at +-3 std, with std = options.std, by default 1/sqrt(dim)
  // (MEGALODON's embedding init).
  Embedding(int64_t num_embeddings, int64_t dim, const InitOptions& options = {});

  // ids (i32/i64) -> [ids..., dim]; ids outside [0, num_embeddings) throw.
  Tensor forward(const Tensor& ids) const;

  const Tensor& weight() const { return weight_; }
  int64_t num_embeddings() const { return weight_.size(0); }
  int64_t dim() const { return weight_.size(1); }

 private:
  Tensor weight_;
};

}  // namespace mgl::nn
