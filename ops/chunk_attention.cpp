// chunk_attention: causal softmax attention inside each chunk of c tokens, per (batch, chunk, head):
//   S = scale · Q Kᵀ + mask   (mask: 0 where key j <= query i + (k_len - q_len), else -inf)
//   P = softmax_rows(S) (in f32; f64 for f64),   P̃ = P ⊙ M / (1 - p)   (M: the Philox dropout mask)
//   O = P̃ V
// Backward (the same per block; P recomputed, never stored):
//   dV = P̃ᵀ dO,   dP = (dO Vᵀ) ⊙ M / (1 - p),   dS = P ⊙ (dP - rowsum(dP ⊙ P)),
//   dQ = scale · dS K,   dK = scale · dSᵀ Q.
// (rowsum(dP ⊙ P) = rowsum(dO ⊙ O), which is how the CUDA kernels get it without P.)
// DropKey moves M into the mask instead: S is also -inf where M drops (i, j), and P̃ = P. The same
// formulas then hold with M/(1-p) = 1; a dropped entry has P = 0, so dS = 0 there, and a row with no
// logit left has P = 0 throughout (not 0/0).
//
// The CPU code below is the reference and test oracle: plain loops, one query row at a time. The CUDA
// path (cuda/chunk_attention.cu) runs the same products as GEMMs over tiles of query rows, keeps only
// the per-row logsumexp of S for the backward, and borrows its scratch tiles from the allocator.
#include "ops/chunk_attention.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "base/chunk_attention_math.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/chunk_attention.h"
#include "ops/ops.h"

namespace mgl {

namespace {

// ---- CPU reference -------------------------------------------------------------------------------

int64_t blocks_of(const AttentionShape& s) { return s.batch * s.chunks * s.heads; }

// Keys visible to query i: 0 .. visible_keys - 1.
int64_t visible_keys(const AttentionShape& s, int64_t i) { return std::min(i + (s.k_len - s.q_len) + 1, s.k_len); }

// The probabilities P[i, 0 .. visible_keys) of query i of `block` (before probability dropout; keys
// dropped by DropKey get 0), into p.
template <class T, class M>
void softmax_row(const AttentionShape& s, const T* q, const T* k, int64_t block, int64_t i, std::vector<M>& p) {
  const int64_t n = visible_keys(s, i);
  const T* qi = q + query_row(s, block, i) * s.dz;
  M max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    if (!in_softmax(s, block, i, j)) {
      p[j] = -INFINITY;
      continue;
    }
    const T* kj = k + key_row(s, block, j) * s.dz;
    M dot = 0;
    for (int64_t e = 0; e < s.dz; ++e) dot += static_cast<M>(qi[e]) * static_cast<M>(kj[e]);
    p[j] = static_cast<M>(s.scale) * dot;
    max = std::max(max, p[j]);
  }
  if (max == -INFINITY) {  // every visible key dropped: no probabilities at all
    std::fill(p.begin(), p.begin() + n, M(0));
    return;
  }
  M sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - max));  // exp(-inf) = 0
  for (int64_t j = 0; j < n; ++j) p[j] /= sum;
}

template <class T>
void forward_cpu(const T* q, const T* k, const T* v, T* o, const AttentionShape& s) {
  using M = typename compute_type<T>::type;
  std::vector<M> p(s.k_len), acc(s.dv);
  for (int64_t block = 0; block < blocks_of(s); ++block)
    for (int64_t i = 0; i < s.q_len; ++i) {
      softmax_row(s, q, k, block, i, p);
      std::fill(acc.begin(), acc.end(), M(0));
      for (int64_t j = 0; j < visible_keys(s, i); ++j) {
        const M weight = p[j] * dropout_factor<M>(s, block, i, j);
        const T* vj = v + key_row(s, block, j) * s.dv;
        for (int64_t c = 0; c < s.dv; ++c) acc[c] += weight * static_cast<M>(vj[c]);
      }
      T* oi = o + query_row(s, block, i) * s.dv;
      for (int64_t c = 0; c < s.dv; ++c) oi[c] = static_cast<T>(acc[c]);
    }
}

template <class T>
void backward_cpu(const T* q, const T* k, const T* v, const T* grad_o, T* grad_q, T* grad_k, T* grad_v,
                  const AttentionShape& s) {
  using M = typename compute_type<T>::type;
  const int64_t q_rows = s.batch * s.chunks * s.q_len * s.heads, k_rows = s.batch * s.chunks * s.k_len * s.heads;
  std::vector<M> gq(q_rows * s.dz, M(0)), gk(k_rows * s.dz, M(0)), gv(k_rows * s.dv, M(0));
  std::vector<M> p(s.k_len), dp(s.k_len);
  for (int64_t block = 0; block < blocks_of(s); ++block)
    for (int64_t i = 0; i < s.q_len; ++i) {
      softmax_row(s, q, k, block, i, p);
      const int64_t n = visible_keys(s, i), qrow = query_row(s, block, i);
      const T* goi = grad_o + qrow * s.dv;
      M rowsum = 0;  // rowsum(dP ⊙ P)
      for (int64_t j = 0; j < n; ++j) {
        const M factor = dropout_factor<M>(s, block, i, j);
        const int64_t krow = key_row(s, block, j);
        const T* vj = v + krow * s.dv;
        M dot = 0;
        for (int64_t c = 0; c < s.dv; ++c) {
          dot += static_cast<M>(goi[c]) * static_cast<M>(vj[c]);
          gv[krow * s.dv + c] += p[j] * factor * static_cast<M>(goi[c]);
        }
        dp[j] = dot * factor;
        rowsum += dp[j] * p[j];
      }
      const T* qi = q + qrow * s.dz;
      for (int64_t j = 0; j < n; ++j) {
        const M ds = static_cast<M>(s.scale) * p[j] * (dp[j] - rowsum);
        const int64_t krow = key_row(s, block, j);
        const T* kj = k + krow * s.dz;
        for (int64_t e = 0; e < s.dz; ++e) {
          gq[qrow * s.dz + e] += ds * static_cast<M>(kj[e]);
          gk[krow * s.dz + e] += ds * static_cast<M>(qi[e]);
        }
      }
    }
  std::transform(gq.begin(), gq.end(), grad_q, [](M x) { return static_cast<T>(x); });
  std::transform(gk.begin(), gk.end(), grad_k, [](M x) { return static_cast<T>(x); });
  std::transform(gv.begin(), gv.end(), grad_v, [](M x) { return static_cast<T>(x); });
}

// ---- dispatch ------------------------------------------------------------------------------------

// The CUDA pass's scratch (score and probability tiles), from the caching allocator: it returns to
// the pool when the tensor is dropped, stream-ordered after the pass's kernels. Undefined when the
// pass needs none. (f32 elements: the size is a multiple of 256 bytes.)
Tensor scratch(const AttentionShape& s, const Tensor& q, cuda::AttentionPass pass) {
  int64_t bytes = 0;
  MGL_ON_CUDA(bytes = cuda::chunk_attention_workspace_bytes(s, q.dtype(), pass));
  return bytes > 0 ? Tensor::empty({bytes / 4}, DType::f32, q.device()) : Tensor();
}

struct Forward {
  Tensor o;
  Tensor logsumexp;  // CUDA only: the kernels' saved softmax statistics (the CPU recomputes P)
};

Forward forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s) {
  Forward out;
  out.o = Tensor::empty({q.size(0), q.size(1), q.size(2), s.dv}, q.dtype(), q.device());
  if (q.is_cpu()) {
    dispatch_floating(q.dtype(), "chunk_attention", [&](auto tag) {
      using T = decltype(tag);
      forward_cpu(q.data<T>(), k.data<T>(), v.data<T>(), out.o.data<T>(), s);
    });
    return out;
  }
  out.logsumexp = Tensor::empty({q.size(0), q.size(1), q.size(2)}, DType::f32, q.device());
  DeviceGuard guard(q.device());
  cuda::ChunkAttentionForwardArgs args;
  args.shape = s;
  args.dtype = q.dtype();
  args.device = q.device().index;
  args.q = q.raw_data();
  args.k = k.raw_data();
  args.v = v.raw_data();
  args.o = out.o.raw_data();
  args.logsumexp = out.logsumexp.data<float>();
  const Tensor workspace = scratch(s, q, cuda::AttentionPass::forward);
  args.workspace = workspace.defined() ? workspace.raw_data() : nullptr;
  MGL_ON_CUDA(cuda::chunk_attention_forward(args, compute_stream(q.device())));
  return out;
}

std::vector<Tensor> backward(const Tensor& q, const Tensor& k, const Tensor& v, const Forward& saved,
                             const Tensor& grad_o, const AttentionShape& s) {
  Tensor gq = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor gk = Tensor::empty(k.shape(), k.dtype(), k.device());
  Tensor gv = Tensor::empty(v.shape(), v.dtype(), v.device());
  const Tensor go = contiguous(cast(grad_o, q.dtype()));
  if (q.is_cpu()) {
    dispatch_floating(q.dtype(), "chunk_attention backward", [&](auto tag) {
      using T = decltype(tag);
      backward_cpu(q.data<T>(), k.data<T>(), v.data<T>(), go.data<T>(), gq.data<T>(), gk.data<T>(), gv.data<T>(), s);
    });
    return {gq, gk, gv};
  }
  Tensor delta = Tensor::empty(saved.logsumexp.shape(), DType::f32, q.device());
  DeviceGuard guard(q.device());
  cuda::ChunkAttentionBackwardArgs args;
  args.shape = s;
  args.dtype = q.dtype();
  args.device = q.device().index;
  args.q = q.raw_data();
  args.k = k.raw_data();
  args.v = v.raw_data();
  args.o = saved.o.raw_data();
  args.grad_o = go.raw_data();
  args.logsumexp = saved.logsumexp.data<float>();
  args.delta = delta.data<float>();
  args.grad_q = gq.raw_data();
  args.grad_k = gk.raw_data();
  args.grad_v = gv.raw_data();
  const Tensor workspace = scratch(s, q, cuda::AttentionPass::backward);
  args.workspace = workspace.defined() ? workspace.raw_data() : nullptr;
  MGL_ON_CUDA(cuda::chunk_attention_backward(args, compute_stream(q.device())));
  return {gq, gk, gv};
}

// Checks shared by both forms: four-dim tensors of one floating dtype on one device, matching batch,
// heads and head dims.
void check_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  for (const Tensor* t : {&q, &k, &v}) {
    MGL_CHECK(t->defined(), op, ": an input is an undefined tensor");
    MGL_CHECK(is_floating(t->dtype()), op, ": expected floating tensors, got ", t->describe());
    MGL_CHECK(t->dim() == 4, op, ": expected q, k, v of shape [batch, length, heads, head_dim], got ", t->describe());
  }
  MGL_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, ": q, k, v must share a dtype, got ", q.describe(),
            ", ", k.describe(), ", ", v.describe());
  MGL_CHECK(q.device() == k.device() && q.device() == v.device(), op, ": q, k, v on different devices: ",
            q.describe(), ", ", k.describe(), ", ", v.describe());
  MGL_CHECK(q.size(0) == k.size(0) && q.size(0) == v.size(0) && q.size(2) == k.size(2) && q.size(2) == v.size(2),
            op, ": batch and heads differ between q ", q.describe(), ", k ", k.describe(), ", v ", v.describe());
  MGL_CHECK(q.size(3) == k.size(3), op, ": head dims of q and k differ: ", q.describe(), " and ", k.describe());
  MGL_CHECK(k.size(1) == v.size(1), op, ": k and v have different lengths: ", k.describe(), " and ", v.describe());
  MGL_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, op, ": dropout must be in [0, 1), got ", options.dropout);
  if (q.is_cuda()) MGL_CHECK(q.dtype() != DType::f64, op, ": CUDA supports f32 and bf16, got ", q.describe());
}

Tensor attention(const char* op, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int64_t chunks,
                 const AttentionOptions& options) {
  const Tensor q = contiguous(q_in), k = contiguous(k_in), v = contiguous(v_in);
  AttentionShape s;
  s.batch = q.size(0);
  s.heads = q.size(2);
  s.chunks = chunks;
  s.q_len = chunks == 0 ? 0 : q.size(1) / chunks;
  s.k_len = chunks == 0 ? 0 : k.size(1) / chunks;
  s.dz = q.size(3);
  s.dv = v.size(3);
  s.scale = options.scale;
  s.dropout = options.dropout;
  s.drop_keys = options.dropout_kind == AttentionDropout::keys;
  if (s.dropout > 0.0) {
    const Generator stream = (options.generator ? *options.generator : default_generator()).take();
    s.seed = stream.seed;
    s.offset = stream.offset;
  }
  Forward saved = forward(q, k, v, s);
  Tensor o = saved.o;
  saved.o = saved.o.detach();
  autograd::record(op, {q, k, v}, {o},
                   [q = q.detach(), k = k.detach(), v = v.detach(), saved, s](const std::vector<Tensor>& g) {
                     return backward(q, k, v, saved, g[0], s);
                   });
  return o;
}

}  // namespace

Tensor chunk_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_size,
                       const AttentionOptions& options) {
  check_inputs("chunk_attention", q, k, v, options);
  MGL_CHECK(chunk_size >= 1, "chunk_attention: chunk_size must be positive, got ", chunk_size);
  const int64_t length = q.size(1);
  MGL_CHECK(k.size(1) == length, "chunk_attention: q and k have different lengths: ", q.describe(), " and ",
            k.describe(), " (use chunk_attention_cached for a KV cache)");
  MGL_CHECK(length <= chunk_size || length % chunk_size == 0, "chunk_attention: length ", length,
            " is neither <= chunk_size ", chunk_size, " nor a multiple of it (q ", q.describe(), ")");
  const int64_t chunks = length == 0 ? 0 : (length <= chunk_size ? 1 : length / chunk_size);
  return attention("chunk_attention", q, k, v, chunks, options);
}

Tensor chunk_attention_cached(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  check_inputs("chunk_attention_cached", q, k, v, options);
  MGL_CHECK(k.size(1) >= q.size(1), "chunk_attention_cached: ", q.size(1), " queries but only ", k.size(1),
            " keys (the keys must include the queries' own): q ", q.describe(), ", k ", k.describe());
  return attention("chunk_attention_cached", q, k, v, q.size(1) == 0 ? 0 : 1, options);
}

}  // namespace mgl
