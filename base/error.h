#pragma once
// Errors. Every failed check throws mgl::Error with a message that names what is wrong: the op, the
// shapes, dtypes and devices involved. Nothing calls exit(): callers (apps) decide how to report.
#include <sstream>
#include <stdexcept>
#include <string>

namespace mgl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace mgl

// MGL_CHECK(condition, message parts...): throws mgl::Error("<message> [file:line]") when false.
// The message parts are streamed, so tensors' describe() strings, numbers and shapes can be mixed.
#define MGL_CHECK(condition, ...)                                                        \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      ::mgl::detail::throw_error(__FILE__, __LINE__, ::mgl::detail::concat(__VA_ARGS__)); \
    }                                                                                    \
  } while (0)

#define MGL_FAIL(...) ::mgl::detail::throw_error(__FILE__, __LINE__, ::mgl::detail::concat(__VA_ARGS__))
