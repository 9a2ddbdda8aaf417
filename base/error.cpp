#include "base/error.h"

#include <cstdlib>
#include <cstring>

namespace mgl::detail {

// The source location is for whoever debugs the engine, not for a user reading why a run stopped
// (issue 15 item 4): it is appended only when the environment variable MGL_DEBUG is set and not "0".
static bool debug_locations() {
  static const bool on = [] {
    const char* value = std::getenv("MGL_DEBUG");
    return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
  }();
  return on;
}

void throw_error(const char* file, int line, const std::string& message) {
  if (!debug_locations()) throw Error(message);
  const char* base = std::strrchr(file, '/');
  throw Error(concat(message, " [", base ? base + 1 : file, ":", line, "]"));
}

}  // namespace mgl::detail
