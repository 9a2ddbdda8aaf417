// CudaDecoder's checks that need no GPU (the decoding itself is tested in test_cuda_decoder_cuda.cpp).
#include "nn/cuda_decoder.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("CudaDecoder: decoding on the CPU is refused with a clear message", "[nn][decoder]") {
  const nn::Megalodon model(nn::MegalodonConfig::preset("test"));
  const std::string message =
      error_message([&] { nn::CudaDecoder decoder(model, 1, DType::f32, nn::DecoderOptions{Device::cpu(), true}); });
  CHECK(contains(message, "CudaDecoder: decodes on a CUDA device, got cpu"));
}
