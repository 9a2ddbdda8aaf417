// CUDA graph capture and replay for decoding; cuda/decode_graph.h has the contract.
#include "base/cuda_check.h"
#include "cuda/decode_graph.h"

namespace mgl::cuda {

struct DecodeGraph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

DecodeGraph* capture_graph(Stream stream, const std::function<void()>& record) {
  MGL_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    record();
  } catch (...) {
    cudaGraph_t abandoned = nullptr;
    cudaStreamEndCapture(stream, &abandoned);  // leaves the stream out of capture mode
    if (abandoned) cudaGraphDestroy(abandoned);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  MGL_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  auto* captured = new DecodeGraph{graph, nullptr};
  const cudaError_t status = cudaGraphInstantiate(&captured->exec, captured->graph, 0);
  if (status != cudaSuccess) {
    destroy_graph(captured);
    MGL_FAIL("capture_graph: cudaGraphInstantiate failed: ", cudaGetErrorString(status));
  }
  return captured;
}

void launch_graph(DecodeGraph* graph, Stream stream) {
  MGL_CHECK(graph && graph->exec, "launch_graph: no instantiated graph");
  MGL_CUDA_CHECK(cudaGraphLaunch(graph->exec, stream));
}

void destroy_graph(DecodeGraph* graph) {
  if (!graph) return;
  if (graph->exec) cudaGraphExecDestroy(graph->exec);
  if (graph->graph) cudaGraphDestroy(graph->graph);
  delete graph;
}

void copy_async(void* destination, const void* source, size_t bytes, Stream stream) {
  MGL_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDefault, stream));
}

struct HostMirror {
  void* host = nullptr;
  size_t bytes = 0;
  cudaEvent_t filled = nullptr;
};

HostMirror* create_host_mirror(size_t bytes) {
  auto* mirror = new HostMirror{nullptr, bytes, nullptr};
  const cudaError_t host = cudaMallocHost(&mirror->host, bytes);
  const cudaError_t event = host == cudaSuccess ? cudaEventCreateWithFlags(&mirror->filled, cudaEventDisableTiming)
                                                : host;
  if (event != cudaSuccess) {
    destroy_host_mirror(mirror);
    MGL_FAIL("create_host_mirror: ", cudaGetErrorString(event));
  }
  return mirror;
}

void destroy_host_mirror(HostMirror* mirror) {
  if (!mirror) return;
  if (mirror->filled) cudaEventDestroy(mirror->filled);
  if (mirror->host) cudaFreeHost(mirror->host);
  delete mirror;
}

void mirror_async(HostMirror* mirror, const void* source, Stream stream) {
  MGL_CUDA_CHECK(cudaMemcpyAsync(mirror->host, source, mirror->bytes, cudaMemcpyDeviceToHost, stream));
  MGL_CUDA_CHECK(cudaEventRecord(mirror->filled, stream));
}

const void* wait_for_mirror(HostMirror* mirror) {
  MGL_CUDA_CHECK(cudaEventSynchronize(mirror->filled));
  return mirror->host;
}

}  // namespace mgl::cuda
