#include "core/device.h"

#include "core/error.h"

namespace mgl {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    MGL_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos,
              "invalid device '", text, "' (expected cpu, cuda or cuda:N)");
    return cuda(std::stoi(digits));
  }
  MGL_FAIL("invalid device '", text, "' (expected cpu, cuda or cuda:N)");
}

}  // namespace mgl
