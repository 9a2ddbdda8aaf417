#include "base/value_range.h"

#include <cmath>
#include <cstdio>

namespace mgl {

namespace {

// A bound as a person writes it: whole numbers in full (2147483647, not 2.14748e+09), others shortest.
std::string bound_text(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char text[32];
  if (value == std::floor(value) && std::fabs(value) < 1e16) std::snprintf(text, sizeof text, "%.0f", value);
  else std::snprintf(text, sizeof text, "%g", value);
  return text;
}

}  // namespace

bool ValueRange::contains(double value) const {
  if (!std::isfinite(value)) return false;
  const bool above_low = low_open ? value > low : value >= low;
  const bool below_high = high_open ? value < high : value <= high;
  return above_low && below_high;
}

std::string ValueRange::describe() const {
  std::string text = low_open ? "(" : "[";  // appended piece by piece: "(" + string trips GCC 12's -Wrestrict
  text += bound_text(low) + ", " + bound_text(high);
  text += high_open ? ")" : "]";
  return text;
}

}  // namespace mgl
