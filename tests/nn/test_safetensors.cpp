// nn/safetensors: every dtype round trips bit for bit with its name, order and metadata; the file is laid
// out as the format says (a file built byte by byte as the reference writer builds it reads back); every
// kind of bad file is an mgl::Error naming the problem.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

std::filesystem::path scratch_file(const std::string& name) { return process_scratch() / name; }

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.numel() * a.element_size()) == 0;
}

std::string bytes_of(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A file as the reference writer makes it: the header's length, the header, the data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  const uint64_t length = header.size();
  return std::string(reinterpret_cast<const char*>(&length), 8) + header + data;
}

}  // namespace

TEST_CASE("safetensors: every dtype round trips bit for bit, in order, with metadata", "[nn][safetensors]") {
  const NamedTensors tensors = {
      {"layers.0.mega.wz.weight", random_tensor({3, 5}, 1, DType::f32)},
      {"embed.weight", cast(random_tensor({4, 2}, 2, DType::f32), DType::bf16)},
      {"double", random_tensor({2, 2, 2}, 3, DType::f64)},
      {"ids", Tensor::from_vector(std::vector<int64_t>{-1, 0, 1LL << 40}, {3})},
      {"i32", Tensor::from_vector(std::vector<int32_t>{7, -7}, {2})},
      {"scalar", Tensor::scalar(2.5)},
      {"empty", Tensor::empty({0, 3})},
      {"transposed view", transpose(random_tensor({2, 3}, 4, DType::f32), 0, 1)},
  };
  const auto path = scratch_file("round_trip.safetensors");
  write_safetensors(path.string(), tensors, {{"format", "pt"}, {"model_config", "{\"a\": 1}"}});
  const SafetensorsContents back = read_safetensors(path.string());
  REQUIRE(back.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    CHECK(back.tensors[i].first == tensors[i].first);
    CHECK(same_bytes(back.tensors[i].second, contiguous(tensors[i].second)));
  }
  CHECK(back.metadata.at("format") == "pt");
  CHECK(back.metadata.at("model_config") == "{\"a\": 1}");
  CHECK(looks_like_safetensors(path.string()));
  // Written again from what was read: the same bytes.
  const auto again = scratch_file("again.safetensors");
  write_safetensors(again.string(), back.tensors, back.metadata);
  CHECK(bytes_of(again) == bytes_of(path));
}

TEST_CASE("safetensors: the layout is the format's", "[nn][safetensors]") {
  const auto path = scratch_file("layout.safetensors");
  write_safetensors(path.string(), {{"b", Tensor::from_vector(std::vector<float>{1, 2}, {2})},
                                    {"a", Tensor::from_vector(std::vector<float>{3}, {1})}}, {});
  const std::string bytes = bytes_of(path);
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  CHECK((8 + length) % 8 == 0);  // padded with spaces
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
  CHECK(header["b"]["dtype"] == "F32");
  CHECK(header["b"]["data_offsets"] == nlohmann::json::array({0, 8}));
  CHECK(header["a"]["data_offsets"] == nlohmann::json::array({8, 12}));
  CHECK(!header.contains("__metadata__"));
  float values[3];
  std::memcpy(values, bytes.data() + 8 + length, sizeof values);
  CHECK(values[0] == 1.0f);
  CHECK(values[2] == 3.0f);

  // A file from another writer (unpadded header, tensors out of name order).
  const float w[2] = {0.5f, -4.0f};
  const auto foreign = scratch_file("foreign.safetensors");
  write_bytes(foreign, safetensors_bytes(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}})",
                                         std::string(reinterpret_cast<const char*>(w), sizeof w)));
  const SafetensorsContents read = read_safetensors(foreign.string());
  REQUIRE(read.tensors.size() == 1);
  CHECK(read.tensors[0].second.shape() == Shape{1, 2});
  CHECK(read.tensors[0].second.to_vector<float>() == std::vector<float>{0.5f, -4.0f});
}

TEST_CASE("safetensors: bad files are named errors", "[nn][safetensors]") {
  const auto path = scratch_file("bad.safetensors");
  auto message_for = [&](const std::string& header, const std::string& data) {
    write_bytes(path, safetensors_bytes(header, data));
    return error_message([&] { read_safetensors(path.string()); });
  };
  const std::string eight(8, '\0');
  CHECK(contains(message_for(R"({"x":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", eight), "F16"));
  CHECK(contains(message_for(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})", eight), "needs 16"));
  CHECK(contains(message_for(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight), "truncated"));
  CHECK(contains(message_for(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                             eight),
                 "overlap"));
  CHECK(contains(message_for(R"({"x":{"dtype":"F32"}})", eight), "'x'"));
  CHECK(contains(message_for(R"({"__metadata__":{"n":1}})", ""), "__metadata__"));
  write_bytes(path, "just some text, long enough");
  CHECK(!looks_like_safetensors(path.string()));
  CHECK(contains(error_message([&] { read_safetensors(path.string()); }), "not a safetensors file"));
  CHECK(contains(error_message([&] {
                   write_safetensors(path.string(), {{"a", Tensor::scalar(1)}, {"a", Tensor::scalar(2)}}, {});
                 }),
                 "repeated"));
}

TEST_CASE("safetensors: a failed write names the OS reason and publishes nothing", "[nn][safetensors]") {
  // Was "writing '...' failed (disk full?)" after an unchecked stream, and no sync before the rename.
  const auto path = scratch_file("full.safetensors");
  write_safetensors(path.string(), {{"a", Tensor::from_vector(std::vector<float>{1, 2}, {2})}}, {});
  const std::string before = bytes_of(path);
  std::filesystem::create_symlink("/dev/full", path.string() + ".tmp");  // every write fails with ENOSPC
  const std::string message = error_message([&] {
    write_safetensors(path.string(), {{"a", Tensor::from_vector(std::vector<float>{3, 4}, {2})}}, {});
  });
  INFO(message);
  CHECK(contains(message, "full.safetensors.tmp': No space left on device"));
  CHECK(bytes_of(path) == before);  // the old file, whole
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path.string() + ".tmp")));
  std::filesystem::remove(path);
}
