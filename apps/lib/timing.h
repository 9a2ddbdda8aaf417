#pragma once
// Wall-clock timing of device work for the benchmarks: the device is synchronised before the clock
// starts and before it stops, so asynchronous launches are counted to completion.
#include <chrono>

#include "core/cuda_context.h"

namespace mgl::apps {

// Average milliseconds of `step` over `iterations` runs, after `warmup` untimed runs.
template <class F>
double mean_ms(const Device& device, int warmup, int iterations, F&& step) {
  for (int i = 0; i < warmup; ++i) step();
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) step();
  synchronize(device);
  const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / iterations;
}

}  // namespace mgl::apps
