// The test main: a plain Catch2 session, plus the CUDA skip convention. A test file whose name
// ends in _cuda calls require_gpu_or_skip() first thing in main-equivalent setup: with no usable
// GPU the whole executable exits with code 77, which CTest reports as "skipped", never "passed".
#if MGL_CATCH_VERSION == 2
#define CATCH_CONFIG_RUNNER
#endif
#include <cstdio>

#include "support/catch.h"
#include "support/testing.h"

int main(int argc, char** argv) {
  if (mgl::testing::gpu_tests_requested() && !mgl::cuda_available()) {
    std::printf("SKIPPED: CUDA tests need a GPU: %s\n", mgl::cuda_unavailable_reason().c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
