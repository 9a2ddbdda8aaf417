#pragma once
// Checks MPI return codes (MPI errors return, dist/mpi_world.cpp sets MPI_ERRORS_RETURN): a failed
// call throws mgl::Error naming the call and MPI's own description.
#include <mpi.h>

#include <string>

#include "base/error.h"

namespace mgl::dist {
inline std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length));
}
}  // namespace mgl::dist

#define MGL_MPI_CHECK(call) MGL_CHECK_STATUS(call, MPI_SUCCESS, "MPI", ::mgl::dist::mpi_error_string(mgl_status_))
