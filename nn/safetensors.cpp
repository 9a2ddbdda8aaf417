#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "core/atomic_file.h"

namespace mgl::nn {

static_assert(std::endian::native == std::endian::little, "safetensors holds little-endian bytes, as this host must");

namespace {

using json = nlohmann::ordered_json;

// The reference reader's limit: a longer header means the file is something else.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

constexpr std::pair<DType, const char*> kDtypeNames[] = {
    {DType::f32, "F32"}, {DType::bf16, "BF16"}, {DType::f64, "F64"}, {DType::i32, "I32"}, {DType::i64, "I64"}};

const char* safetensors_dtype(DType dtype) {
  for (auto [d, name] : kDtypeNames)
    if (d == dtype) return name;
  MGL_FAIL("safetensors: no name for dtype ", dtype_name(dtype));
}

DType dtype_from_safetensors(const json& name, const std::string& where) {
  for (auto [d, n] : kDtypeNames)
    if (name == n) return d;
  MGL_FAIL(where, ": dtype ", name.dump(), " is not one read here (F32, BF16, F64, I32, I64)");
}

// One tensor of the header, checked.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const json& value, uint64_t data_bytes, const std::string& path) {
  const std::string where = path + ": tensor '" + name + "'";
  MGL_CHECK(value.is_object() && value.contains("dtype") && value.contains("shape") && value["shape"].is_array() &&
                value.contains("data_offsets") && value["data_offsets"].is_array() && value["data_offsets"].size() == 2 &&
                value["data_offsets"][0].is_number_unsigned() && value["data_offsets"][1].is_number_unsigned(),
            where, " lacks a dtype, a shape or two data_offsets: ", value.dump());
  Entry e{name, dtype_from_safetensors(value["dtype"], where), {}, value["data_offsets"][0].get<uint64_t>(),
          value["data_offsets"][1].get<uint64_t>()};
  for (const json& d : value["shape"]) {
    MGL_CHECK(d.is_number_unsigned(), where, ": shape ", value["shape"].dump(), " is not a list of sizes");
    e.shape.push_back(d.get<int64_t>());
  }
  MGL_CHECK(e.begin <= e.end && e.end <= data_bytes, where, ": bytes [", e.begin, ", ", e.end, ") lie outside the ",
            data_bytes, " bytes of data (truncated file?)");
  const uint64_t expected = static_cast<uint64_t>(numel(e.shape)) * dtype_size(e.dtype);
  MGL_CHECK(e.end - e.begin == expected, where, ": ", e.end - e.begin, " bytes for ", value["dtype"].get<std::string>(),
            shape_str(e.shape), ", which needs ", expected);
  return e;
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    MGL_CHECK(!header.contains(name), path, ": tensor name '", name, "' is repeated or reserved");
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    header[name] = {{"dtype", safetensors_dtype(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFile out(path);  // a crash or a full disk never leaves a half-written file under `path`
  const uint64_t length = text.size();
  out.write(&length, sizeof length);
  out.write(text.data(), text.size());
  for (const auto& [name, tensor] : tensors) {  // one host copy at a time, row-major
    const Tensor host = Tensor::empty(tensor.shape(), tensor.dtype(), Device::cpu());
    copy_(host, tensor);
    out.write(host.raw_data(), static_cast<size_t>(host.numel() * host.element_size()));
  }
  out.commit();
}

SafetensorsContents read_safetensors(const std::string& path) {
  MGL_CHECK(looks_like_safetensors(path), "'", path, "' is not a safetensors file (no header length and JSON header)");
  std::ifstream in(path, std::ios::binary);
  const uint64_t file_bytes = std::filesystem::file_size(path);
  uint64_t length = 0;
  in.read(reinterpret_cast<char*>(&length), sizeof length);
  std::string text(length, '\0');
  in.read(text.data(), static_cast<std::streamsize>(length));
  const json header = json::parse(text, nullptr, /*allow_exceptions=*/false);
  MGL_CHECK(in.good() && header.is_object(), path, ": the safetensors header is not a JSON object");

  SafetensorsContents contents;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name != "__metadata__") {
      entries.push_back(parse_entry(name, value, file_bytes - sizeof length - length, path));
      continue;
    }
    MGL_CHECK(value.is_object(), path, ": __metadata__ is not an object of strings");
    for (const auto& [key, text_value] : value.items()) {
      MGL_CHECK(text_value.is_string(), path, ": __metadata__ key '", key, "' is not a string");
      contents.metadata[key] = text_value.get<std::string>();
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    MGL_CHECK(entries[i].begin >= entries[i - 1].end, path, ": the bytes of tensors '", entries[i - 1].name, "' and '",
              entries[i].name, "' overlap");
  for (const Entry& e : entries) {
    Tensor tensor = Tensor::empty(e.shape, e.dtype, Device::cpu());
    in.seekg(static_cast<std::streamoff>(sizeof length + length + e.begin));
    in.read(static_cast<char*>(tensor.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    MGL_CHECK(in.good(), path, ": reading tensor '", e.name, "' failed");
    contents.tensors.emplace_back(e.name, tensor);
  }
  return contents;
}

bool looks_like_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t length = 0;
  char first = 0;
  in.read(reinterpret_cast<char*>(&length), sizeof length);
  in.get(first);
  std::error_code error;
  const uint64_t file_bytes = std::filesystem::file_size(path, error);
  return in.good() && !error && first == '{' && length <= kMaxHeaderBytes && sizeof length + length <= file_bytes;
}

}  // namespace mgl::nn
