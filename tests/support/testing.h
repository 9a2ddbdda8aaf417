#pragma once
// Test helpers shared by every test file.
//
//  * random inputs (never zeros) from a fresh seed per test, reported on failure;
//  * check_gradients(): finite-difference gradcheck in f64 for a function of several inputs;
//  * relative_error(): ||out - ref|| / ||ref|| (the CUDA-vs-CPU metric);
//  * compare_cuda_to_cpu(): runs a function on CPU (f32) and on CUDA (f32 or bf16), forward and
//    backward, and returns the worst relative error over outputs and input gradients.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "core/tensor.h"
#include "support/catch.h"
#include "support/errors.h"

namespace mgl::testing {

// Set to true by a test file (through MGL_CUDA_TEST_FILE) whose tests need a GPU.
bool gpu_tests_requested();
struct RequestGpu {
  RequestGpu();
};
#define MGL_CUDA_TEST_FILE static ::mgl::testing::RequestGpu mgl_request_gpu_instance;

// A new seed for every call (from the time and a counter), printed by Catch on failure via INFO.
uint64_t fresh_seed();

// Uniform in [low, high) (default [-1, 1)), never all-zero, f64 on CPU unless stated.
Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::f64, double low = -1.0, double high = 1.0,
                     Device device = Device::cpu());
// Random ids in [0, vocab).
Tensor random_ids(const Shape& shape, int64_t vocab, uint64_t seed, DType dtype = DType::i64);

// Runs gradcheck and fails the current test (with the report) if it does not pass.
void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                     const autograd::GradcheckOptions& options = {});
void check_gradients_multi(const autograd::MultiFunction& f, const std::vector<Tensor>& inputs,
                           const autograd::GradcheckOptions& options = {});

double relative_error(const Tensor& out, const Tensor& ref);
double relative_error(const std::vector<double>& out, const std::vector<double>& ref);


// Forward + backward of f on the CPU in `reference` (f64 by default) and on CUDA in `dtype`, from the same
// inputs (rounded to `dtype` first, so only the computation differs); the outputs are seeded with the
// same random projections (also rounded to the GPU output's dtype). Inputs that require grad are
// compared on their gradients. Integer inputs are passed through unchanged (moved to the device).
// Returns the largest relative error ||gpu - cpu|| / ||cpu|| and fills `report` with one line per
// compared tensor.
double compare_cuda_to_cpu(const autograd::MultiFunction& f, const std::vector<Tensor>& inputs, DType dtype,
                           std::string* report = nullptr, DType reference = DType::f64);

// Whether x and y hold the same values bit for bit: same dtype and shape, any layouts and devices.
bool same_bits(const Tensor& x, const Tensor& y);

// The values of the 1-D tensor `host` on `device` in the three layouts that take an elementwise kernel's three
// paths: contiguous and 16-byte aligned, contiguous one element into its allocation (not 16-byte aligned), and
// with stride 2 (the strided kernel).
std::vector<Tensor> aligned_offset_strided(const Tensor& host, const Device& device);

// Checks, for an elementwise f of 1-D inputs (the values `host` holds) to any outputs, that every output has the
// same bits whichever of aligned_offset_strided's layouts the inputs take on `device`: f of every input strided
// (the strided kernels) against f of each combination in `layouts`, one index per input (0 aligned, 1 one element
// into an allocation, 2 strided).
void check_layouts_give_same_bits(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                                  const std::vector<Tensor>& host, const Device& device,
                                  const std::vector<std::vector<int>>& layouts);

// y = f(inputs) and, for the seed dy of y, the gradient of each input: {y, d inputs[0], d inputs[1], ...}, all
// detached. The inputs keep their layouts (each is differentiated as a detached leaf of the same view).
std::vector<Tensor> value_and_grads(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                    const std::vector<Tensor>& inputs, const Tensor& dy);

// Tolerance for compare_cuda_to_cpu by dtype: f32 1e-5, bf16 1e-2.
double tolerance_for(DType dtype);

// compare_cuda_to_cpu for a function of one tensor: fails the current test, with `what`, the
// input and the per-tensor report, when the error exceeds tolerance_for(dtype).
void check_cuda_matches_cpu(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, DType dtype,
                            const std::string& what);

}  // namespace mgl::testing
