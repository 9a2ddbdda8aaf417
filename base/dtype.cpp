#include "base/dtype.h"

#include "base/error.h"

namespace mgl {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64})
    if (name == dtype_name(t)) return t;
  MGL_FAIL("unknown dtype '", name, "' (expected f32, bf16, f64, i32 or i64)");
}

}  // namespace mgl
