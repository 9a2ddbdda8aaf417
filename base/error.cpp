#include "base/error.h"

#include <cstring>

namespace mgl::detail {

void throw_error(const char* file, int line, const std::string& message) {
  const char* base = std::strrchr(file, '/');
  throw Error(concat(message, " [", base ? base + 1 : file, ":", line, "]"));
}

}  // namespace mgl::detail
