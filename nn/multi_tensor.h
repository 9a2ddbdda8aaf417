#pragma once
// The device description of a tensor list for a multi-tensor launch (cuda/multi_tensor.h): the slots,
// then the chunks of every slot in list order, packed into one buffer and uploaded without a wait
// (core/host_upload.h). The buffer is freed in stream order, after the launch that reads it, so a
// table lives as long as the code that launches with it. (Gradients are new tensors every step, so the
// table is rebuilt every step: a few KB against the megabytes the launch reads.)
#include <cstring>
#include <vector>

#include "core/tensor.h"
#include "cuda/multi_tensor.h"

namespace mgl::nn {

template <class Slot>
class MultiTensorTable {
 public:
  // counts[i]: the elements of slot i (slots of no elements have no chunks).
  MultiTensorTable(const std::vector<Slot>& slots, const std::vector<int64_t>& counts, const Device& device) {
    std::vector<cuda::MultiTensorChunk> chunks;
    for (size_t i = 0; i < slots.size(); ++i)
      for (int64_t piece = 0; piece < cuda::multi_tensor_chunks(counts[i]); ++piece)
        chunks.push_back({static_cast<int32_t>(i), static_cast<int32_t>(piece)});
    slot_count_ = static_cast<int64_t>(slots.size());
    chunk_count_ = static_cast<int64_t>(chunks.size());
    // Slots first (their 8-byte alignment is the buffer's), then the chunks.
    static_assert(alignof(Slot) <= 8 && alignof(cuda::MultiTensorChunk) <= 8);
    slot_bytes_ = (sizeof(Slot) * slots.size() + 7) / 8 * 8;
    const size_t bytes = slot_bytes_ + sizeof(cuda::MultiTensorChunk) * chunks.size();
    Tensor host = Tensor::empty({static_cast<int64_t>((bytes + 7) / 8)}, DType::i64);
    std::memcpy(host.raw_data(), slots.data(), sizeof(Slot) * slots.size());
    std::memcpy(static_cast<char*>(host.raw_data()) + slot_bytes_, chunks.data(),
                sizeof(cuda::MultiTensorChunk) * chunks.size());
    buffer_ = Tensor::empty(host.shape(), DType::i64, device);
    copy_(buffer_, host);
  }

  const Slot* slots() const { return static_cast<const Slot*>(buffer_.raw_data()); }
  const cuda::MultiTensorChunk* chunks() const {
    return reinterpret_cast<const cuda::MultiTensorChunk*>(static_cast<const char*>(buffer_.raw_data()) + slot_bytes_);
  }
  int64_t slot_count() const { return slot_count_; }
  int64_t chunk_count() const { return chunk_count_; }

 private:
  Tensor buffer_;
  size_t slot_bytes_ = 0;
  int64_t slot_count_ = 0, chunk_count_ = 0;
};

}  // namespace mgl::nn
