#pragma once
// Sample moments for statistical tests of random draws (initialisers, RNG distributions).
#include <vector>

namespace mgl::testing {

struct Moments {
  double mean = 0, variance = 0;  // variance with Bessel's correction (divided by n - 1)
};

inline Moments moments(const std::vector<double>& values) {
  Moments m;
  for (double x : values) m.mean += x;
  m.mean /= static_cast<double>(values.size());
  for (double x : values) m.variance += (x - m.mean) * (x - m.mean);
  m.variance /= static_cast<double>(values.size() - 1);
  return m;
}

}  // namespace mgl::testing
