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

// MGL_CHECK(condition, message parts...): throws mgl::Error("<message>") when false, with " [file:line]"
// appended when the environment variable MGL_DEBUG is set (base/error.cpp).
// The message parts are streamed, so tensors' describe() strings, numbers and shapes can be mixed.
#define MGL_CHECK(condition, ...)                                                        \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      ::mgl::detail::throw_error(__FILE__, __LINE__, ::mgl::detail::concat(__VA_ARGS__)); \
    }                                                                                    \
  } while (0)

#define MGL_FAIL(...) ::mgl::detail::throw_error(__FILE__, __LINE__, ::mgl::detail::concat(__VA_ARGS__))

// MGL_CHECK_STATUS(call, success, "Library", description parts...): for the C libraries that return a
// status code (CUDA, cuBLAS, NCCL, MPI). Runs `call` once and throws "<Library> error in <call>: <description>"
// when its status is not `success`; the description parts may name the status as `mgl_status_`.
#define MGL_CHECK_STATUS(call, success, library, ...)                                    \
  do {                                                                                   \
    const auto mgl_status_ = (call);                                                     \
    MGL_CHECK(mgl_status_ == (success), library " error in ", #call, ": ", __VA_ARGS__); \
  } while (0)
