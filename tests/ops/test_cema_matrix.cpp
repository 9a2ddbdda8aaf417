// CEMA's matrix form inside a chunk (cuda/cema.h: cema_power, cema_tap, cema_chunk_sum, cema_chunk_output) on
// the CPU, in f64 and in f32, against the recurrence in f64: the scheme of cuda/cema.cu's forward run step for
// step (a table of powers and taps, chunk sums chained over groups of chunks, the carry over the groups with
// exp(len·log q), each group's outputs chained chunk to chunk) and the chunk sums of its reverse sweep (the
// backward's adjoint: powers of conj(q), a complex P, windows read backwards). Decays |q| from 0 to 1 − 1e-4,
// lengths that end in a short chunk and in a partial group, 16 modes and fewer, an incoming state.
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <vector>

#include "cuda/cema.h"
#include "support/testing.h"

using namespace mgl;

namespace {

using C64 = Complex<double>;
constexpr int64_t kChunk = cuda::kCemaChunk;
// |q| of mode n is kRadii[n % 6]: 0 is 1 − αδ rounded to 0 (log q = −inf).
constexpr double kRadii[] = {1e-3, 0.3, 0.9, 0.999, 1 - 1e-4, 0.0};

// One channel: coefficients, an incoming state and inputs, in T (the f64 reference takes the same values
// widened, so only the arithmetic differs).
template <class T>
struct Channel {
  std::vector<T> p, x;
  std::vector<Complex<T>> log_q, gamma, h_in;
  T omega;
};

template <class T>
Channel<T> random_channel(int64_t N, int64_t L, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> unit(-1, 1), weight(0.05, 1);
  auto complex = [&] { return Complex<T>(T(unit(rng)), T(unit(rng))); };
  Channel<T> c;
  for (int64_t n = 0; n < N; ++n) {
    c.p.push_back(T(weight(rng)));
    c.log_q.push_back(Complex<T>(T(std::log(kRadii[n % 6])), T(std::numbers::pi * unit(rng))));
    c.gamma.push_back(complex());
    c.h_in.push_back(complex());
  }
  c.omega = T(unit(rng));
  for (int64_t t = 0; t < L; ++t) c.x.push_back(T(unit(rng)));
  return c;
}

template <class T>
C64 wide(Complex<T> z) {
  return C64(z);
}

// Complex values as (re, im) pairs, for the error norms.
std::vector<double> flatten(const std::vector<C64>& z) {
  std::vector<double> out;
  for (const C64& v : z) {
    out.push_back(v.re);
    out.push_back(v.im);
  }
  return out;
}

// The value kinds the f64 recurrences below run on: the values themselves, or their magnitudes. On magnitudes
// (q → |q|, p·x → |p·x|, γ → |γ|) each recurrence bounds the sum of the magnitudes of the terms whose sum is
// the true value, which is what the rounding errors of an f32 scheme scale with. A value of the recurrence
// itself can cancel to near 0 (the inputs have random signs), and an error relative to it then measures the
// cancellation, not the scheme: relative to the values, 3000 runs of the f32 check gave a median of 7e-7 but
// tails of 1.5e-5 (states) and 3.8e-3 (one output).
struct Values {
  using V = C64;
  static V of(C64 z) { return z; }
  static double of(double x) { return x; }
  static double re(V v) { return v.re; }
};
struct Moduli {
  using V = double;
  static V of(C64 z) { return std::hypot(z.re, z.im); }
  static double of(double x) { return std::abs(x); }
  static double re(V v) { return v; }
};

// The recurrence h_t = q·h_{t-1} + p·x_t, y_t = Re Σ_n γ_n h_{t,n} + omega·x_t in f64, q = exp(log q), on the
// values or the magnitudes (K).
template <class K, class T>
void recurrence(const Channel<T>& c, std::vector<double>& y, std::vector<typename K::V>& h_out) {
  const size_t N = c.p.size();
  y.assign(c.x.size(), 0.0);
  h_out.clear();
  for (size_t n = 0; n < N; ++n) {
    const auto q = K::of(exp(wide(c.log_q[n]))), gamma = K::of(wide(c.gamma[n]));
    auto h = K::of(wide(c.h_in[n]));
    for (size_t t = 0; t < c.x.size(); ++t) {
      h = q * h + K::of(double(c.p[n]) * double(c.x[t]));
      y[t] += K::re(gamma * h);
    }
    h_out.push_back(h);
  }
  for (size_t t = 0; t < c.x.size(); ++t) y[t] += K::of(double(c.omega) * double(c.x[t]));
}

// What cuda/cema.cu's tables_kernel builds for one channel: the powers by row (Z_n[j] at rows[j][n]) and by
// mode (columns[n][j]), the taps and γ·p.
template <class T>
struct Table {
  std::vector<std::vector<Complex<T>>> rows, columns;
  std::vector<T> taps;
  std::vector<Complex<T>> gamma_p;
};

template <class T>
Table<T> make_table(const Channel<T>& c) {
  const int64_t N = int64_t(c.p.size());
  Table<T> table;
  table.rows.assign(kChunk + 1, std::vector<Complex<T>>(N));
  table.columns.assign(N, std::vector<Complex<T>>(kChunk + 1));
  for (int64_t j = 0; j <= kChunk; ++j) {
    for (int64_t n = 0; n < N; ++n) table.rows[j][n] = table.columns[n][j] = cuda::cema_power(c.log_q[n], j);
  }
  for (int64_t j = 0; j < kChunk; ++j) {
    table.taps.push_back(cuda::cema_tap(j, c.omega, c.p.data(), c.gamma.data(), table.rows[j].data(), N));
  }
  for (int64_t n = 0; n < N; ++n) table.gamma_p.push_back(c.gamma[n] * c.p[n]);
  return table;
}

int64_t chunk_length(int64_t L, int64_t c) { return std::min(kChunk, L - c * kChunk); }

// The forward of cuda/cema.cu in T with groups of G chunks: y and h_out.
template <class T>
void matrix_forward(const Channel<T>& c, int64_t G, std::vector<T>& y, std::vector<Complex<T>>& h_out) {
  const int64_t N = int64_t(c.p.size()), L = int64_t(c.x.size());
  const int64_t C = (L + kChunk - 1) / kChunk, groups = (C + G - 1) / G;
  const Table<T> table = make_table(c);
  // Pass 1: each group's end state from zero, Horner's rule over its chunks (s ← Z[len]·s + A), times p. A
  // chunk's window is right-aligned: its len inputs end it.
  std::vector<std::vector<Complex<T>>> states(groups, std::vector<Complex<T>>(N));
  for (int64_t k = 0; k < groups; ++k) {
    for (int64_t n = 0; n < N; ++n) {
      Complex<T> s;
      for (int64_t ch = k * G; ch < std::min(C, (k + 1) * G); ++ch) {
        const int64_t len = chunk_length(L, ch);
        std::vector<T> window(kChunk, T(0));
        for (int64_t i = 0; i < len; ++i) window[kChunk - len + i] = c.x[ch * kChunk + i];
        s = table.rows[len][n] * s + cuda::cema_chunk_sum(table.columns[n].data(), window.data());
      }
      states[k][n] = c.p[n] * s;
    }
  }
  // Pass 2: the carry, with Q^len of each group from exp(len·log q).
  h_out = c.h_in;
  for (int64_t k = 0; k < groups; ++k) {
    const int64_t len = std::min(G * kChunk, L - k * G * kChunk);
    for (int64_t n = 0; n < N; ++n) {
      const Complex<T> end = states[k][n];
      states[k][n] = h_out[n];
      h_out[n] = cuda::cema_power(c.log_q[n], len) * h_out[n] + end;
    }
  }
  // Pass 3: each group's outputs from its entering state, g = γ·h chained to the next chunk by
  // g ← Z[32]·g + γ·p·A.
  y.assign(L, T(0));
  for (int64_t k = 0; k < groups; ++k) {
    std::vector<Complex<T>> g(N);
    for (int64_t n = 0; n < N; ++n) g[n] = c.gamma[n] * states[k][n];
    for (int64_t ch = k * G; ch < std::min(C, (k + 1) * G); ++ch) {
      const int64_t len = chunk_length(L, ch);
      std::vector<T> u(kChunk, T(0));
      for (int64_t i = 0; i < len; ++i) u[i] = c.x[ch * kChunk + i];
      for (int64_t i = 0; i < len; ++i) {
        y[ch * kChunk + i] = cuda::cema_chunk_output(i, table.taps.data(), u.data(), table.rows[i + 1].data(),
                                                     g.data(), N);
      }
      if (len < kChunk) continue;  // only the last chunk is short, and nothing follows it
      for (int64_t n = 0; n < N; ++n) {
        g[n] = table.rows[kChunk][n] * g[n] + table.gamma_p[n] * cuda::cema_chunk_sum(table.columns[n].data(), u.data());
      }
    }
  }
}

// The backward's reverse sweep s ← conj(q)·s + conj(q·γ)·u_t over t = L−1 .. 0 from s = h_in, by chunks (one
// state per chunk, windows read backwards, powers conjugated): the state entering every chunk and the last.
template <class T>
std::vector<std::vector<Complex<T>>> matrix_reverse_sweep(const Channel<T>& c) {
  const int64_t N = int64_t(c.p.size()), L = int64_t(c.x.size()), C = (L + kChunk - 1) / kChunk;
  const Table<T> table = make_table(c);
  std::vector<std::vector<Complex<T>>> entering(C + 1, std::vector<Complex<T>>(N));
  for (int64_t n = 0; n < N; ++n) {
    std::vector<Complex<T>> z(kChunk);
    for (int64_t j = 0; j < kChunk; ++j) z[j] = conj(table.columns[n][j]);
    const Complex<T> P = conj(exp(c.log_q[n]) * c.gamma[n]);
    Complex<T> s = c.h_in[n];
    for (int64_t ch = C - 1; ch >= 0; --ch) {
      const int64_t len = chunk_length(L, ch);
      std::vector<T> window(kChunk, T(0));
      for (int64_t k = kChunk - len; k < kChunk; ++k) window[k] = c.x[ch * kChunk + kChunk - 1 - k];
      entering[ch][n] = s;
      s = cuda::cema_power(conj(c.log_q[n]), len) * s + P * cuda::cema_chunk_sum(z.data(), window.data());
    }
    entering[C][n] = s;  // after the sweep (the kernels' `final`)
  }
  return entering;
}

// The same sweep step by step in f64 on the values or the magnitudes (K), recording the state as each chunk is
// entered.
template <class K, class T>
std::vector<std::vector<typename K::V>> recurrence_reverse_sweep(const Channel<T>& c) {
  const int64_t N = int64_t(c.p.size()), L = int64_t(c.x.size()), C = (L + kChunk - 1) / kChunk;
  std::vector<std::vector<typename K::V>> entering(C + 1, std::vector<typename K::V>(N));
  for (int64_t n = 0; n < N; ++n) {
    const C64 q = exp(wide(c.log_q[n]));
    const auto Q = K::of(conj(q)), P = K::of(conj(q * wide(c.gamma[n])));
    auto s = K::of(wide(c.h_in[n]));
    for (int64_t t = L - 1; t >= 0; --t) {
      if (t == std::min(L, (t / kChunk + 1) * kChunk) - 1) entering[t / kChunk][n] = s;
      s = Q * s + P * K::of(double(c.x[t]));
    }
    entering[C][n] = s;
  }
  return entering;
}

// ||a - ref|| / ||scale||: the error against the magnitudes that bound it (complex values flattened to (re, im)
// pairs, each with one magnitude in `scale`, so the two norms sum the same squares).
double scaled_error(const std::vector<double>& a, const std::vector<double>& ref, const std::vector<double>& scale) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) diff += (a[i] - ref[i]) * (a[i] - ref[i]);
  for (double v : scale) norm += v * v;
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

struct Case {
  int64_t N, L, G;
};
// Lengths of one step, one chunk, one step past it, partial groups for G = 2 and 8 with a short last chunk.
const Case kCases[] = {{16, 1, 1},  {16, 32, 2},  {16, 33, 8},  {3, 100, 2},
                       {16, 257, 8}, {16, 300, 4}, {5, 555, 8}, {16, 1024, 8}};

// Both schemes at every case against the recurrence; `tolerance` bounds the errors relative to the magnitudes.
template <class T>
void check_schemes(double tolerance) {
  for (const Case& s : kCases) {
    const uint64_t seed = testing::fresh_seed();
    INFO("N " << s.N << " L " << s.L << " G " << s.G << " seed " << seed);
    std::mt19937_64 rng(seed);
    const Channel<T> c = random_channel<T>(s.N, s.L, rng);
    std::vector<double> y_ref, y_scale, h_scale;
    std::vector<C64> h_ref;
    recurrence<Values>(c, y_ref, h_ref);
    recurrence<Moduli>(c, y_scale, h_scale);
    std::vector<T> y;
    std::vector<Complex<T>> h_out;
    matrix_forward(c, s.G, y, h_out);
    std::vector<C64> h_wide;
    for (const Complex<T>& h : h_out) h_wide.push_back(wide(h));
    CHECK(scaled_error(std::vector<double>(y.begin(), y.end()), y_ref, y_scale) <= tolerance);
    CHECK(scaled_error(flatten(h_wide), flatten(h_ref), h_scale) <= tolerance);

    const std::vector<std::vector<Complex<T>>> entering = matrix_reverse_sweep(c);
    const std::vector<std::vector<C64>> entering_ref = recurrence_reverse_sweep<Values>(c);
    const std::vector<std::vector<double>> entering_scale = recurrence_reverse_sweep<Moduli>(c);
    for (size_t ch = 0; ch < entering.size(); ++ch) {
      std::vector<C64> state;
      for (const Complex<T>& v : entering[ch]) state.push_back(wide(v));
      INFO("reverse sweep, state entering chunk " << ch);
      CHECK(scaled_error(flatten(state), flatten(entering_ref[ch]), entering_scale[ch]) <= tolerance);
    }
  }
}

}  // namespace

TEST_CASE("cema matrix form: the kernels' scheme in f64 equals the recurrence", "[ops][cema]") {
  check_schemes<double>(1e-12);
}

TEST_CASE("cema matrix form: the kernels' scheme in f32 follows the recurrence", "[ops][cema]") {
  // f32 rounding in sums of up to 32 terms per chunk, chained over up to 32 chunks by factors |q^32| <= 1, against
  // the magnitudes (the recurrences on Moduli). The worst of 2000 runs of every case (fresh seeds): 1.3e-7 for the
  // outputs, 5.8e-7 for the final states, 5.9e-7 for the reverse sweep's states, so 1e-5 leaves a margin of 17.
  check_schemes<float>(1e-5);
}

TEST_CASE("cema matrix form: the forward's groups", "[ops][cema]") {
  // Groups of 8 chunks where they still leave 65536 walks of (b, channel, group), shorter ones below that.
  CHECK(cuda::cema_group_chunks({1, 32768, 1024, 16}) == 8);
  CHECK(cuda::cema_group_chunks({1, 4096, 1024, 16}) == 2);
  CHECK(cuda::cema_group_chunks({8, 4096, 768, 16}) == 8);
  CHECK(cuda::cema_group_chunks({2, 5000, 7, 16}) == 1);
  CHECK(cuda::cema_group_chunks({1, 0, 1024, 16}) == 1);
}
