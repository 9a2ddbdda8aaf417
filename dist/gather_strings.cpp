#include "dist/gather_strings.h"

#include <algorithm>
#include <cstring>

namespace mgl::dist {

namespace {
// Strings as one byte string: for each, its length (8 bytes) and its bytes.
std::string pack(const std::vector<std::string>& strings) {
  std::string out;
  for (const std::string& s : strings) {
    const auto n = static_cast<int64_t>(s.size());
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    out += s;
  }
  return out;
}
std::vector<std::string> unpack(const char* data, size_t size) {
  std::vector<std::string> out;
  for (size_t at = 0; at + sizeof(int64_t) <= size;) {
    int64_t n = 0;
    std::memcpy(&n, data + at, sizeof n);
    at += sizeof n;
    out.emplace_back(data + at, static_cast<size_t>(n));
    at += static_cast<size_t>(n);
  }
  return out;
}
}  // namespace

std::vector<std::string> gather_strings(const std::vector<std::string>& mine, const dist::ProcessGroup& group) {
  if (group.size() == 1) return mine;
  dist::Communicator& comm = group.on(Device::cpu());
  const std::string bytes = pack(mine);
  // Sizes first, then every rank's bytes padded to the longest, as 8-byte words.
  const Tensor size = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(bytes.size())}, {1});
  const Tensor sizes = Tensor::empty({group.size()}, DType::i64);
  comm.all_gather(size, sizes)->wait();
  const std::vector<int64_t> all_sizes = sizes.to_vector<int64_t>();
  const int64_t words = (*std::max_element(all_sizes.begin(), all_sizes.end()) + 7) / 8;
  const Tensor padded = Tensor::zeros({std::max<int64_t>(words, 1)}, DType::i64);
  std::memcpy(padded.raw_data(), bytes.data(), bytes.size());
  const Tensor gathered = Tensor::empty({group.size() * padded.numel()}, DType::i64);
  comm.all_gather(padded, gathered)->wait();
  if (group.rank() != 0) return {};
  std::vector<std::string> out;
  const char* base = static_cast<const char*>(gathered.raw_data());
  for (int r = 0; r < group.size(); ++r) {
    std::vector<std::string> theirs = unpack(base + static_cast<size_t>(r) * padded.numel() * 8,
                                             static_cast<size_t>(all_sizes[static_cast<size_t>(r)]));
    out.insert(out.end(), theirs.begin(), theirs.end());
  }
  return out;
}

}  // namespace mgl::dist
