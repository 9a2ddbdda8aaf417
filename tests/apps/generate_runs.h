#pragma once
// Shared by the generate command-line tests (CPU and CUDA): small checkpoints of the byte-level test
// model, and a scratch directory that runs the generate binary (MGL_GENERATE_BINARY, defined by
// tests/CMakeLists.txt) and captures its exit status, stdout and stderr.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "nn/checkpoint.h"
#include "support/scratch.h"
#include "support/testing.h"

namespace mgl::testing {

// The byte-level "test" model: chunk 8, so that prompts and generations cross chunk boundaries.
inline nn::MegalodonConfig byte_config() {
  nn::MegalodonConfig config = nn::MegalodonConfig::preset("test");
  config.vocab_size = 256;
  return config;
}

inline void write_checkpoint(const std::string& path, const nn::MegalodonConfig& config, const std::string& tokenizer,
                             const std::string& tokenizer_model = "") {
  Generator gen(fresh_seed());
  nn::InitOptions init;
  init.generator = &gen;
  const nn::Megalodon model(config, init);
  const nn::AdamW optimizer(model.named_parameters());
  nn::TrainingState state;
  state.step = 3;
  state.tokenizer = tokenizer;
  state.tokenizer_model = tokenizer_model;
  nn::save_checkpoint(path, model, optimizer, state);
}

inline std::string read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Run {
  int status = -1;
  std::string out, err;
};

class Workspace {
 public:
  Workspace() : dir_(process_scratch() / ("generate_" + std::to_string(fresh_seed()))) {
    std::filesystem::create_directories(dir_);
  }
  ~Workspace() { std::filesystem::remove_all(dir_); }
  std::filesystem::path path(const std::string& name) const { return dir_ / name; }
  std::string file(const std::string& name, const std::string& contents) const {
    std::ofstream(path(name), std::ios::binary) << contents;
    return path(name).string();
  }

  // Runs generate with `args` (already quoted), stdin from `input`.
  Run generate(const std::string& args, const std::string& input = "") const {
    const std::string in = file("stdin.txt", input);
    const std::string command = std::string(MGL_GENERATE_BINARY) + " " + args + " < " + quote(in) + " > " +
                                quote(path("stdout.txt").string()) + " 2> " + quote(path("stderr.txt").string());
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(path("stdout.txt")), read(path("stderr.txt"))};
  }

 private:
  std::filesystem::path dir_;
};

// The checkpoint's model, ready for inference.
inline std::unique_ptr<nn::Megalodon> load_model(const std::string& path) {
  auto model = std::make_unique<nn::Megalodon>(nn::read_checkpoint_info(path).model_config);
  nn::load_checkpoint_model(path, *model);
  model->eval();
  return model;
}

}  // namespace mgl::testing
