#pragma once
// CUDA graphs for decoding: the launches of one step are recorded once and replayed per token with a
// single call, which removes the per-kernel launch cost (about a hundred small kernels per token).
// A replay runs exactly the recorded kernels with exactly the recorded arguments, so everything that
// changes from token to token must sit in device memory that the kernels read.
#include <cstddef>
#include <functional>

#include "cuda/layout.h"

namespace mgl::cuda {

struct DecodeGraph;  // an instantiated graph (opaque)

// Records the launches `record` makes on `stream` (nothing runs) and instantiates them as a graph.
// The capture is thread-local: other threads may keep working meanwhile, but `record` must not
// allocate, synchronise, or touch other streams. If `record` throws, the capture is abandoned.
DecodeGraph* capture_graph(Stream stream, const std::function<void()>& record);
void launch_graph(DecodeGraph* graph, Stream stream);
void destroy_graph(DecodeGraph* graph);  // null: nothing

// An asynchronous copy of `bytes` bytes between any two of host and device memory, in stream order.
void copy_async(void* destination, const void* source, size_t bytes, Stream stream);

}  // namespace mgl::cuda
