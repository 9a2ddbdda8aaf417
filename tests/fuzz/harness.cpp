#include "fuzz/harness.h"

#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <exception>
#include <filesystem>
#include <fstream>
#include <typeinfo>

#include "base/error.h"
#include "support/scratch.h"

namespace mgl::fuzz {

std::string scratch_path(const std::string& name) {
  const std::filesystem::path path = testing::process_scratch() / name;
  std::filesystem::create_directories(path.parent_path());
  return path.string();
}

std::string write_scratch_file(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_path(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

void expect_success_or_error(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error&) {
    // the input was refused as documented
  } catch (const std::exception& e) {
    int status = 0;
    char* type = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
    std::fprintf(stderr, "fuzz: an exception other than mgl::Error escaped: %s: %s\n", type ? type : typeid(e).name(),
                 e.what());
    std::free(type);
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "fuzz: an exception other than mgl::Error escaped (not a std::exception)\n");
    std::abort();
  }
}

void require(bool condition, const std::string& what) {
  if (condition) return;
  std::fprintf(stderr, "fuzz: %s\n", what.c_str());
  std::abort();
}

std::vector<std::string_view> split_parts(std::string_view input) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t end = input.find(kPartSeparator);
    parts.push_back(input.substr(0, end));
    if (end == std::string_view::npos) return parts;
    input.remove_prefix(end + kPartSeparator.size());
  }
}

}  // namespace mgl::fuzz
