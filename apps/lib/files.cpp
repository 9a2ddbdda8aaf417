#include "apps/lib/files.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/error.h"

namespace mgl::apps {

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  MGL_CHECK(in.good(), "cannot read ", what, " '", path, "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary);
    out << contents;
    out.close();
    MGL_CHECK(out.good(), "cannot write '", temporary, "'");
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace mgl::apps
