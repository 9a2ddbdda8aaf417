#pragma once
// Checking error messages: error_message(f) runs f and returns the message of the mgl::Error it
// throws, so a test can assert that the message names the problem (the op, the shapes, the bad
// value). A call that throws nothing fails the current test; any other exception escapes and fails
// it too (the library promises mgl::Error for every bad input).
#include <string>
#include <utility>

#include "base/error.h"
#include "support/catch.h"

namespace mgl::testing {

template <class F>
std::string error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL_CHECK("expected an mgl::Error, but nothing was thrown");
  return {};
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace mgl::testing
