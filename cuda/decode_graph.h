#pragma once
// CUDA graphs for decoding: the launches of one step are recorded once and replayed per token with a
// single call, which removes the per-kernel launch cost (about a hundred small kernels per token).
// A replay runs exactly the recorded kernels with exactly the recorded arguments, so everything that
// changes from token to token must sit in device memory that the kernels read.
#include <cstddef>
#include <functional>

#include "base/layout.h"

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

// Pinned host memory that a stream fills asynchronously, with an event that marks the newest fill:
// how a step's small result (the chosen token ids) reaches the host while the device goes on with the
// next step. The host must read a fill before it asks for the next one.
struct HostMirror;  // opaque
HostMirror* create_host_mirror(size_t bytes);
void destroy_host_mirror(HostMirror* mirror);  // null: nothing
// Enqueues the copy of the mirror's bytes from device memory at `source`, and the event after it.
void mirror_async(HostMirror* mirror, const void* source, Stream stream);
// Blocks until the newest mirror_async has landed (not until the stream is idle); returns the bytes.
const void* wait_for_mirror(HostMirror* mirror);

}  // namespace mgl::cuda
