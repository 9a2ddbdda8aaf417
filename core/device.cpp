#include "core/device.h"

#include <charconv>

#include "base/error.h"

namespace mgl {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    // Digits only, and a value that fits an int (from_chars reports overflow instead of throwing).
    const char* first = text.data() + 5;
    const char* last = text.data() + text.size();
    int index = -1;
    const auto [end, status] = std::from_chars(first, last, index);
    if (first != last && *first != '-' && *first != '+' && status == std::errc{} && end == last) return cuda(index);
  }
  MGL_FAIL("invalid device '", text, "' (expected cpu, cuda or cuda:N)");
}

}  // namespace mgl
