#pragma once
// TimestepNorm's formulas (docs/megalodon.md §2.2), written once for the CPU reference
// (ops/timestep_norm.cpp), the scan kernels (cuda/timestep_norm.cu) and the decoding step
// (cuda/decode_step.cu). Plain C++ marked MGL_HOST_DEVICE, so a CPU loop in f64 and a GPU thread in f32
// run the same lines.
//
// The state of one sequence b and group g is the count n of time steps absorbed and the mean mu and
// population variance v of the n·dg values they held. The prior every sequence starts from is
// (0, 0, 1); with count 0 neither its mean nor its variance reaches any output (the first step replaces
// them).
//
// Welford/Chan fold (§2.2.2): the union of two disjoint sets of steps a and b, with n = n_a + n_b,
// w_a = n_a / n, w_b = n_b / n, d = mean_b − mean_a, is
//   mean = mean_a + w_b d,   var = var_a + w_b ((var_b − var_a) + w_a d²)   (= w_a var_a + w_b var_b + w_a w_b d²)
// One time step with moments (m_t, s_t) is the set (1, m_t, s_t); folding it into the state gives §2.2.2's
// c1 = w_a = n_{t−1}/n_t, c2 = w_b = 1/n_t. The increments (w_b d and the variance's) are formed apart from
// the sums so that the kernels can add them Kahan-compensated.
//
// Adjoint step (§2.2.3): the backward sweep carries (a_mu, a_v), the gradients of the running mean and
// variance after step t, to before it, and gives the adjoints (dm, ds) of the step's moments.
#include <cstdint>

#include "base/dtype.h"

namespace mgl {

// Which time steps are padding: a row-major [B, L] tensor of any dtype, non-zero = padded.
// data == nullptr means no padding.
struct PaddingMask {
  const void* data = nullptr;
  DType dtype = DType::i32;

  MGL_HOST_DEVICE bool padded(int64_t step) const {
    if (data == nullptr) return false;
    switch (dtype) {
      case DType::i32: return static_cast<const int32_t*>(data)[step] != 0;
      case DType::i64: return static_cast<const int64_t*>(data)[step] != 0;
      case DType::f32: return static_cast<const float*>(data)[step] != 0.0f;
      case DType::f64: return static_cast<const double*>(data)[step] != 0.0;
      case DType::bf16: return (static_cast<const uint16_t*>(data)[step] & 0x7fffu) != 0;  // +-0 is zero
    }
    return false;
  }
};

// x is [batch, length, dim] with dim split into `groups` groups of dim / groups channels.
struct TimestepNormSizes {
  int64_t batch = 0, length = 0, dim = 0, groups = 1;
};

// Count, mean and population variance of a set of steps; count 0 is the empty set. (A plain aggregate,
// so that it can live in shared memory.)
template <class S>
struct RunningMoments {
  int64_t count;
  S mean;
  S var;
};

template <class S>
MGL_HOST_DEVICE constexpr RunningMoments<S> timestep_norm_prior() {
  return {0, S(0), S(1)};
}

// What merging b into a adds to a's mean and variance (both sides non-empty).
template <class S>
struct MomentsIncrement {
  S mean, var;
};
template <class S>
MGL_HOST_DEVICE inline MomentsIncrement<S> merge_increment(const RunningMoments<S>& a, const RunningMoments<S>& b) {
  const int64_t n = a.count + b.count;
  const S wa = S(a.count) / S(n), wb = S(b.count) / S(n);
  const S d = b.mean - a.mean;
  return {wb * d, wb * ((b.var - a.var) + wa * d * d)};
}

// The union of two disjoint sets of steps. An empty side leaves the other as it is, so a state of
// count 0 keeps its mean and variance until a real step replaces them.
template <class S>
MGL_HOST_DEVICE inline RunningMoments<S> merge(const RunningMoments<S>& a, const RunningMoments<S>& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const MomentsIncrement<S> step = merge_increment(a, b);
  return {a.count + b.count, a.mean + step.mean, a.var + step.var};
}

// Gradients with respect to the running mean and variance.
template <class S>
struct NormAdjoint {
  S mean, var;
};

// One step of the backward sweep, for an unpadded step with `count` = the count after it: r = r_t,
// p = P_t = Σ_k dy w, s = S_t = Σ_k dy w (x − mu_t), m = m_t, mu_prev = mu_{t−1}. Moves `a` from after
// the step to before it and returns the adjoints (dm, ds) of the step's moments:
//   Dmu = a_mu − r P,  Dv = a_v − r³ S / 2,  dm = c2 Dmu + 2 c1 c2 (m − mu_prev) Dv,  ds = c2 Dv,
//   a_mu ← c1 Dmu − 2 c1 c2 (m − mu_prev) Dv,  a_v ← c1 Dv.
template <class S>
MGL_HOST_DEVICE inline void adjoint_step(NormAdjoint<S>& a, int64_t count, S r, S p, S s, S m, S mu_prev, S& dm,
                                         S& ds) {
  const S c2 = S(1) / S(count), c1 = S(count - 1) * c2;
  const S dmu = a.mean - r * p, dv = a.var - S(0.5) * r * r * r * s;
  const S cross = S(2) * c1 * c2 * (m - mu_prev) * dv;
  dm = c2 * dmu + cross;
  ds = c2 * dv;
  a.mean = c1 * dmu - cross;
  a.var = c1 * dv;
}

}  // namespace mgl
