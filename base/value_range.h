#pragma once
// The range a numeric setting accepts (a command-line flag, a config key): an interval of finite numbers,
// either end open or closed (docs/reliability.md, "Numeric flags and their ranges"; docs/training.md,
// "Config keys and their ranges"). contains() refuses NaN and the infinities whatever the bounds: a check
// `lr > 0` alone lets +inf through, and one written as `!(p < 0)` lets NaN through (every comparison with NaN
// is false). describe() prints the interval as --help and the error messages show it: "[0, 1)", "(0, inf)",
// "[1, 2147483647]".
//
// The bounds are doubles, exact for every whole number up to 2^53: integer settings use it too, their
// values converted (an int64 beyond 2^53 is only ever compared with a bound far from it).
#include <cstdint>
#include <limits>
#include <string>

#include "base/error.h"

namespace mgl {

struct ValueRange {
  double low;
  double high;             // infinity: no upper bound (the value must still be finite)
  bool low_open = false;   // true: low itself is outside
  bool high_open = false;  // true: high itself is outside

  bool contains(double value) const;
  std::string describe() const;

  // By the interval's shape: closed(0, 1) is [0, 1], closed_open(0, 1) is [0, 1), and so on.
  static constexpr ValueRange closed(double low, double high) { return {low, high, false, false}; }
  static constexpr ValueRange closed_open(double low, double high) { return {low, high, false, true}; }
  static constexpr ValueRange open_closed(double low, double high) { return {low, high, true, false}; }
  static constexpr ValueRange open(double low, double high) { return {low, high, true, true}; }
  static constexpr ValueRange at_least(double low) { return closed_open(low, kInfinity); }  // [low, inf)
  static constexpr ValueRange above(double low) { return open(low, kInfinity); }            // (low, inf)
  static constexpr double kInfinity = std::numeric_limits<double>::infinity();
};

// Throws "<name> must be in <range>, got <value>" unless the range contains the value.
template <class T>
void check_in_range(const ValueRange& range, const std::string& name, T value) {
  MGL_CHECK(range.contains(static_cast<double>(value)), name, " must be in ", range.describe(), ", got ", value);
}

// The largest count a count setting takes (steps, tokens to generate, ...): far beyond any real run, and small
// enough that sums and products of counts stay far from int64 overflow.
constexpr int64_t kMaxCount = 1'000'000'000'000;
// The largest size (a model dimension, sequences per batch, tokens per sequence, ranks of a grid): int32's
// largest, the type of token ids; no model or batch that fits a device comes near it in one dimension.
constexpr int64_t kMaxSize = 2'147'483'647;

}  // namespace mgl
