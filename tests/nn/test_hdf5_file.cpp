// HDF5 files of named tensors: round trip of every dtype and layout, groups, attributes, atomic writes,
// and clear errors for missing, corrupted and truncated files.
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "nn/hdf5_file.h"
#include "ops/ops.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using mgl::nn::Hdf5File;

namespace {
std::string temp_path(const std::string& name) { return (process_scratch() / name).string(); }

// A file holding one f32 dataset "w" of shape `dims` whose data was never written, made with the HDF5 C API
// as a corrupted or hostile file would be: only the header declares the size. `chunk` (empty: contiguous)
// gives the chunked layout's chunk shape.
void write_declared_only(const std::string& path, const std::vector<hsize_t>& dims, const std::vector<hsize_t>& chunk) {
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
  if (!chunk.empty()) H5Pset_chunk(create, static_cast<int>(chunk.size()), chunk.data());
  const hid_t dataset = H5Dcreate2(file, "w", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, create, H5P_DEFAULT);
  REQUIRE(dataset >= 0);
  H5Dclose(dataset);
  H5Pclose(create);
  H5Sclose(space);
  REQUIRE(H5Fclose(file) >= 0);
}
}  // namespace

TEST_CASE("hdf5: tensors round trip with names, groups and dtypes", "[nn][hdf5]") {
  const std::string path = temp_path("roundtrip.h5");
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({3, 4, 5}, seed, DType::f32);
  Tensor b = random_tensor({7}, seed + 1, DType::f64);
  Tensor ids = random_ids({2, 9}, 100, seed + 2, DType::i64);
  Tensor ids32 = random_ids({4}, 100, seed + 3, DType::i32);
  Tensor strided = transpose(random_tensor({4, 6}, seed + 4, DType::f32), 0, 1);  // non-contiguous
  Tensor half = cast(random_tensor({5}, seed + 5, DType::f32), DType::bf16);
  {
    Hdf5File file(path, Hdf5File::Mode::create);
    file.write("layers.0.mega.cema.alpha", a);
    file.write("grads/layers.0.mega.cema.alpha", b);
    file.write("input_ids", ids);
    file.write("ids32", ids32);
    file.write("strided", strided);
    file.write("half", half);
    file.set_attribute("config", std::string("{\"model_dim\": 16}"));
    file.set_attribute("step", int64_t{42});
    file.set_attribute("lr", 3.5e-4);
  }
  Hdf5File file(path, Hdf5File::Mode::read);
  CHECK(file.read("layers.0.mega.cema.alpha").to_vector<float>() == a.to_vector<float>());
  CHECK(file.read("grads/layers.0.mega.cema.alpha").to_vector<double>() == b.to_vector<double>());
  CHECK(file.read("input_ids").dtype() == DType::i64);
  CHECK(file.read("input_ids").to_vector<int64_t>() == ids.to_vector<int64_t>());
  CHECK(file.read("ids32").to_vector<int32_t>() == ids32.to_vector<int32_t>());
  CHECK(file.read("strided").shape() == Shape{6, 4});
  CHECK(file.read("strided").to_vector<float>() == strided.to_vector<float>());
  CHECK(file.read("half").dtype() == DType::f32);  // bf16 is stored as f32, exactly
  CHECK(file.read("half").to_vector<float>() == half.to_vector<float>());
  CHECK(file.contains("grads/layers.0.mega.cema.alpha"));
  CHECK_FALSE(file.contains("grads"));  // a group, not a dataset
  CHECK_FALSE(file.contains("missing/name"));
  CHECK(file.dataset_names().size() == 6);
  CHECK(file.string_attribute("config") == "{\"model_dim\": 16}");
  CHECK(file.int_attribute("step") == 42);
  CHECK(file.double_attribute("lr") == 3.5e-4);
  CHECK_FALSE(file.has_attribute("nope"));
  std::filesystem::remove(path);
}

TEST_CASE("hdf5: byte strings round trip, empty and with every byte value", "[nn][hdf5]") {
  const std::string path = temp_path("bytes.h5");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  all += std::string("\0\0tail", 6);
  {
    Hdf5File file(path, Hdf5File::Mode::create);
    file.write_bytes("tokenizer/model", all);
    file.write_bytes("empty", "");
    file.write("floats", Tensor::ones({2}));
  }
  Hdf5File file(path, Hdf5File::Mode::read);
  CHECK(file.read_bytes("tokenizer/model") == all);
  CHECK(file.read_bytes("empty").empty());
  CHECK(mgl::testing::error_message([&] { file.read_bytes("floats"); }).find("not a 1-D array of bytes") !=
        std::string::npos);
  CHECK(mgl::testing::error_message([&] { file.read_bytes("absent"); }).find("no dataset 'absent'") != std::string::npos);
  std::filesystem::remove(path);
}

TEST_CASE("hdf5: bad files and names give clear errors", "[nn][hdf5]") {
  CHECK(mgl::testing::error_message([] { Hdf5File("/nonexistent/dir/x.h5", Hdf5File::Mode::read); }).find("no such file") !=
        std::string::npos);
  const std::string garbage = temp_path("garbage.h5");
  std::ofstream(garbage) << "this is not an HDF5 file";
  CHECK(mgl::testing::error_message([&] { Hdf5File(garbage, Hdf5File::Mode::read); }).find("not an HDF5 file") != std::string::npos);
  std::filesystem::remove(garbage);

  // A file cut in half is refused at open or at read, never read as valid data.
  const std::string path = temp_path("truncated.h5");
  {
    Hdf5File file(path, Hdf5File::Mode::create);
    file.write("w", random_tensor({256, 256}, fresh_seed(), DType::f32));
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  CHECK_THROWS_AS([&] { Hdf5File(path, Hdf5File::Mode::read).read("w"); }(), Error);
  std::filesystem::remove(path);

  const std::string ok = temp_path("ok.h5");
  {
    Hdf5File file(ok, Hdf5File::Mode::create);
    file.write("x", Tensor::ones({2}));
    CHECK(mgl::testing::error_message([&] { file.write("x", Tensor::ones({2})); }).find("'x'") != std::string::npos);
  }
  Hdf5File file(ok, Hdf5File::Mode::read);
  CHECK(mgl::testing::error_message([&] { file.read("y"); }).find("no dataset 'y'") != std::string::npos);
  CHECK(mgl::testing::error_message([&] { file.int_attribute("step"); }).find("no attribute 'step'") != std::string::npos);
  std::filesystem::remove(ok);
}

TEST_CASE("hdf5: a dataset declaring more than the file stores is refused before allocating", "[nn][hdf5]") {
  const std::string path = temp_path("declared.h5");
  // Contiguous, 2^20 x 2^20 f32: 4 TiB declared, nothing stored (the fuzzer's find was 824 GB). Allocating it
  // would abort under ASan and swap or fail elsewhere; the read must stop at the header.
  write_declared_only(path, {hsize_t{1} << 20, hsize_t{1} << 20}, {});
  std::string message = mgl::testing::error_message([&] { Hdf5File(path, Hdf5File::Mode::read).read("w"); });
  INFO(message);
  CHECK(message.find("dataset 'w' declares more bytes (4398046511104) than the file stores for it (0)") !=
        std::string::npos);
  CHECK(message.find("truncated or corrupted") != std::string::npos);

  // Chunked (maybe compressed: it may store fewer bytes than it holds), only the overflow is checked:
  // 2^31 x 2^31 f32 is 2^64 bytes.
  write_declared_only(path, {hsize_t{1} << 31, hsize_t{1} << 31}, {1, 1024});
  message = mgl::testing::error_message([&] { Hdf5File(path, Hdf5File::Mode::read).read("w"); });
  INFO(message);
  CHECK(message.find("dataset 'w' declares more bytes (over 2^63)") != std::string::npos);
  std::filesystem::remove(path);
}

TEST_CASE("hdf5: atomic writes leave nothing behind on failure", "[nn][hdf5]") {
  const std::string path = temp_path("atomic.h5");
  nn::write_hdf5_atomically(path, [](Hdf5File& f) { f.write("a", Tensor::ones({3})); });
  CHECK(Hdf5File(path, Hdf5File::Mode::read).read("a").to_vector<float>() == std::vector<float>{1, 1, 1});
  // A failing writer: the old file stays intact and no temporary file remains.
  CHECK_THROWS_AS(nn::write_hdf5_atomically(path,
                                            [](Hdf5File& f) {
                                              f.write("a", Tensor::zeros({3}));
                                              throw Error("simulated failure");
                                            }),
                  Error);
  CHECK(Hdf5File(path, Hdf5File::Mode::read).read("a").to_vector<float>() == std::vector<float>{1, 1, 1});
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove(path);
}
