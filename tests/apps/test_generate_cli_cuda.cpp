// The generate app on a GPU: greedy decoding chooses on the device (StreamingSession::next_greedy)
// exactly what the host path chooses (--top-k 1 samples the arg max on the host from the same logits),
// alone and in --prompts-file batches with a stop text, with the repetition penalty, in f32 and bf16;
// the report names the decoder's set-up.
#include "apps/generate_runs.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("generate: greedy on the GPU chooses on the device what the host would", "[cuda][apps][generate]") {
  Workspace ws;
  const std::string checkpoint = ws.path("model.h5").string();
  write_checkpoint(checkpoint, byte_config(), "bytes");
  const std::string prompts = ws.file("prompts.txt", "abcdefghijk\nthe end\n0123456789A\n");
  for (const std::string dtype : {"f32", "bf16"}) {
    INFO(dtype);
    const std::string base = "--checkpoint " + quote(checkpoint) + " --device cuda --dtype " + dtype +
                             " --repetition-penalty 1.3 ";
    for (const std::string& task : {std::string("--prompt 'Once upon a' --max-new-tokens 40"),
                                    std::string("--prompt 'Once upon a' --max-new-tokens 1"),
                                    "--prompts-file " + quote(prompts) + " --max-new-tokens 25 --stop e"}) {
      INFO(task);
      const Run device = ws.generate(base + task + " --greedy");
      const Run host = ws.generate(base + task + " --top-k 1");
      INFO("device: " << device.err << "host: " << host.err);
      REQUIRE(device.status == 0);
      REQUIRE(host.status == 0);
      CHECK(device.out == host.out);
      CHECK(!device.out.empty());
      CHECK(contains(device.err, "decoder set-up") == !contains(task, "--max-new-tokens 1"));
      CHECK(!contains(host.err, "decoder set-up"));
    }
  }
}
