#pragma once
// Shapes and strides (in elements) and the broadcasting rule shared by every elementwise op.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace mgl {

using Shape = std::vector<int64_t>;

int64_t numel(const Shape& shape);
std::string shape_str(const Shape& shape);               // "[2, 3]"
Shape contiguous_strides(const Shape& shape);            // row-major
int64_t normalize_dim(int64_t dim, int64_t rank, const char* op);  // -1 -> rank-1, checked

// NumPy broadcasting: align trailing dims; each pair must be equal or one of them 1.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Strides that read a tensor of `shape`/`strides` as if it had the (broadcast) shape `target`:
// broadcast dims get stride 0, missing leading dims are prepended with stride 0.
std::vector<int64_t> broadcast_strides(const Shape& shape, const std::vector<int64_t>& strides,
                                       const Shape& target);

}  // namespace mgl
