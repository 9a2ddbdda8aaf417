// generate: text generation and long-context scoring with a trained MEGALODON checkpoint, in memory
// that does not grow with the context (nn/streaming.h). docs/generate.md is the manual.
//
//   generate --checkpoint FILE|DIR [--prompt TEXT | --prompt-file FILE | --prompts-file FILE]
//            [--max-new-tokens 256] [--greedy] [--temperature 1] [--top-k 0] [--top-p 1]
//            [--repetition-penalty 1] [--seed 1234] [--stop TEXT]... [--device auto|cpu|cuda]
//            [--dtype f32|bf16] [--norm-mode windowed|exact] [--tokenizer-model FILE]
//   generate --checkpoint FILE|DIR --score FILE... [--score-curve FILE] [--score-buckets log2|linear]
//            [--score-bucket-width N] [--device ...] [--dtype ...] [--norm-mode ...]
//
// Under mpirun (docs/generate.md, "Under mpirun") each rank loads the checkpoint on its own device:
// --prompts-file deals the batches to the ranks (balanced by their tokens) and rank 0 prints every
// result in input order (or writes them to --output FILE.jsonl); --score splits one text into
// parts dealt in rounds and scored as a pipeline over the ranks (apps/lib/parallel_scoring.h), or
// scores several files whole, one per rank, when there are at least as many files as ranks. A
// --score file is read and tokenized a block at a time (apps/lib/token_source.h).
//
// The checkpoint holds everything: the model config, the parameters and the tokenizer (its identity
// and, for SentencePiece, the model bytes). A DIR means its newest valid step_<N>.h5, looked for in
// DIR, DIR/checkpoints and DIR/out/checkpoints.
//
// One prompt (--prompt, --prompt-file, or stdin when neither is given) streams its continuation to
// stdout as it is generated. --prompts-file generates one continuation per line; prompts of the same
// token length run together as one batch (so no padding is needed and each row is exactly what it
// would be alone), and each result is printed as a JSON line when its batch is done: {"index",
// "prompt", "completion", "ids" (the generated token ids), "finish_reason" ("length", "eos" or
// "stop")}; text that is not valid UTF-8 shows U+FFFD there, the ids are exact.
// A prompt starts after the tokenizer's end-of-sequence id when it has one: that is how a document
// starts in the training stream that `prepare` writes.
//
// Every error (a missing or corrupted checkpoint, a tokenizer mismatch, an empty prompt, bad
// sampling parameters, ids outside the vocabulary, output that cannot be written) is one line on stderr
// and exit status 1; a bad command line (an unknown flag, a number out of its range) exit status 2.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_set>

#include "apps/lib/app_errors.h"
#include "apps/lib/command_line.h"
#include "apps/lib/files.h"
#include "apps/lib/parallel_scoring.h"
#include "apps/lib/rank_shares.h"
#include "apps/lib/sampling.h"
#include "apps/lib/scoring.h"
#include "apps/lib/text_stream.h"
#include "apps/lib/token_source.h"
#include "apps/lib/tokenizer.h"
#include "base/error.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "dist/mpi_world.h"
#include "dist/parallel_state.h"
#include "nn/checkpoint.h"
#include "nn/streaming.h"

using namespace mgl;
using namespace mgl::apps;
namespace fs = std::filesystem;

namespace {

struct Settings {
  std::string checkpoint;
  std::optional<std::string> prompt, prompt_file, prompts_file;
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  uint64_t seed = 1234;
  std::vector<std::string> stops;
  std::string device = "auto";
  std::string dtype = "f32";
  std::optional<std::string> norm_mode;
  std::string tokenizer_model;
  std::vector<std::string> score;  // files to score
  std::optional<std::string> score_curve, output;
  std::string score_buckets = "log2";
  int64_t score_bucket_width = 1024;
};

// Output that does not arrive is a failure, not a success (issue 15 item 5): a closed pipe (EPIPE, when
// SIGPIPE is ignored), a full disk (ENOSPC) or a closed stdout end generation with the reason and exit
// status 1 at the first token that cannot be written.
void require_output_written() {
  MGL_CHECK(std::fflush(stdout) == 0 && !std::ferror(stdout), "cannot write to standard output: ", os_reason());
}

// Time spent and tokens processed in the two phases, for the closing report.
struct Throughput {
  bool scoring = false;  // the prefill phase is the scoring of a file
  int64_t prefill_tokens = 0, decode_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  double setup_seconds = 0;  // greedy decoding on the device: setting the CUDA decoder up
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The checkpoint file a --checkpoint argument names (see the header).
std::string resolve_checkpoint(const std::string& given) {
  MGL_CHECK(fs::exists(given), "checkpoint '", given, "' not found");
  if (!fs::is_directory(given)) return given;
  std::vector<std::string> skipped;
  for (const fs::path& dir : {fs::path(given), fs::path(given) / "checkpoints", fs::path(given) / "out" / "checkpoints"}) {
    if (!fs::is_directory(dir)) continue;
    if (auto path = nn::CheckpointDirectory(dir.string(), 1).newest_valid(&skipped)) return *path;
  }
  std::string reasons;
  for (const std::string& s : skipped) reasons += "; skipped " + s;
  MGL_FAIL("no valid checkpoint (step_<N>.h5) in '", given, "', '", given, "/checkpoints' or '", given,
           "/out/checkpoints'", reasons);
}

// The checkpoint's tokenizer, or --tokenizer-model when given (which must be the same tokenizer).
std::unique_ptr<Tokenizer> checkpoint_tokenizer(const nn::TrainingState& state, const Settings& s,
                                                int64_t model_vocab) {
  std::unique_ptr<Tokenizer> tokenizer;
  if (!s.tokenizer_model.empty()) {
    tokenizer = load_sentencepiece(s.tokenizer_model);
    check_tokenizer_identity(*tokenizer, state.tokenizer);
  } else {
    tokenizer = tokenizer_from_identity(state.tokenizer, state.tokenizer_model);
  }
  MGL_CHECK(tokenizer->vocab_size() <= model_vocab, "the tokenizer has ", tokenizer->vocab_size(),
            " ids, more than the model's vocabulary of ", model_vocab);
  return tokenizer;
}

// The ids of a prompt: the document separator (when the tokenizer has one), then the text.
std::vector<int32_t> encode_prompt(const Tokenizer& tokenizer, const std::string& text, const std::string& where,
                                   int64_t model_vocab) {
  MGL_CHECK(!text.empty(), "empty prompt", where);
  std::vector<int32_t> ids;
  if (tokenizer.eos_id()) ids.push_back(*tokenizer.eos_id());
  for (int32_t id : tokenizer.encode(text)) ids.push_back(id);
  for (size_t i = 0; i < ids.size(); ++i)
    MGL_CHECK(ids[i] >= 0 && ids[i] < model_vocab, "prompt token ", ids[i], " at position ", i, where,
              " is outside the model's vocabulary [0, ", model_vocab, ")");
  return ids;
}

struct Completion {
  std::string text;
  std::vector<int32_t> ids;  // generated (an end-of-sequence id is not included)
  std::string finish_reason = "length";  // "length", "eos" or "stop"
};

// Generates continuations of prompts of equal length as one batch. With `echo`, row 0's text goes
// to stdout as it is produced.
std::vector<Completion> generate_batch(const nn::Megalodon& model, const nn::StreamingOptions& streaming,
                                       const Tokenizer& tokenizer, const std::vector<std::vector<int32_t>>& prompts,
                                       const std::vector<uint64_t>& seeds, const Settings& s, bool echo,
                                       Throughput& throughput) {
  const auto B = static_cast<int64_t>(prompts.size());
  const auto n = static_cast<int64_t>(prompts[0].size());
  const int64_t vocab = model.config().vocab_size, choices = tokenizer.vocab_size();
  std::vector<int32_t> flat;
  for (const auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());

  nn::StreamingSession session(model, B, streaming);
  auto start = std::chrono::steady_clock::now();
  std::vector<float> logits = session.prefill(Tensor::from_vector(flat, {B, n}, DType::i64)).to_vector<float>();
  throughput.prefill_seconds += seconds_since(start);
  throughput.prefill_tokens += B * n;

  std::vector<Completion> out(B);
  std::vector<Sampler> samplers;
  std::vector<TextStream> texts;
  std::vector<std::unordered_set<int32_t>> contexts;  // what the repetition penalty sees
  std::vector<bool> active(B, true);
  for (int64_t b = 0; b < B; ++b) {
    samplers.emplace_back(s.sampling, seeds[b]);
    texts.emplace_back(tokenizer, s.stops, prompts[b]);
    contexts.emplace_back(prompts[b].begin(), prompts[b].end());
  }
  auto emit = [&](int64_t b, const std::string& piece) {
    out[b].text += piece;
    if (echo && b == 0 && !piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      require_output_written();
    }
  };
  // Greedy decoding on a GPU chooses on the device (StreamingSession::next_greedy): the host then
  // only prints, while the device already computes the next token. Otherwise the logits come back
  // and the host samples. Either way the first token is chosen on the host from the prefill's logits.
  const bool on_device = s.sampling.is_greedy() && session.can_decode_greedily_on_device();
  std::chrono::steady_clock::time_point decode_start;
  std::vector<int64_t> next(B, 0);  // a finished row keeps being fed (its logits are ignored)
  for (int64_t step = 0; step < s.max_new_tokens; ++step) {
    const bool last = step + 1 == s.max_new_tokens;
    if (on_device && step > 0) {
      next = session.next_greedy(!last);  // feeds the token unless none will follow
      throughput.decode_tokens += B;       // the step that chose it
    }
    for (int64_t b = 0; b < B; ++b) {
      if (!active[b]) continue;
      if (!on_device || step == 0) {
        const std::vector<float> row(logits.begin() + b * vocab, logits.begin() + b * vocab + choices);
        next[b] = samplers[b].next(row, contexts[b]);
      }
      const auto token = static_cast<int32_t>(next[b]);
      if (tokenizer.eos_id() && token == *tokenizer.eos_id()) {
        out[b].finish_reason = "eos";
        active[b] = false;
        continue;
      }
      out[b].ids.push_back(token);
      contexts[b].insert(token);
      emit(b, texts[b].push(token));
      if (texts[b].stopped()) out[b].finish_reason = "stop", active[b] = false;
    }
    if (std::find(active.begin(), active.end(), true) == active.end() || last) break;
    if (on_device) {
      if (step > 0) continue;
      // start_greedy sets the decoder up (weights copied, graph captured: a one-time cost, reported
      // apart) and enqueues the first step; the decode phase is then timed until the last choice,
      // host work included, over exactly the steps whose choices it waited for.
      start = std::chrono::steady_clock::now();
      std::vector<std::vector<int32_t>> seen;
      for (int64_t b = 0; b < B; ++b) seen.emplace_back(contexts[b].begin(), contexts[b].end());
      session.start_greedy(next, s.sampling.repetition_penalty, choices, seen);
      decode_start = std::chrono::steady_clock::now();
      throughput.setup_seconds += std::chrono::duration<double>(decode_start - start).count();
      continue;
    }
    start = std::chrono::steady_clock::now();
    logits = session.decode(Tensor::from_vector(next, {B}, DType::i64)).to_vector<float>();
    throughput.decode_seconds += seconds_since(start);
    throughput.decode_tokens += B;
  }
  if (decode_start != std::chrono::steady_clock::time_point{}) throughput.decode_seconds += seconds_since(decode_start);
  for (int64_t b = 0; b < B; ++b) emit(b, texts[b].finish());
  if (echo) std::printf("\n");
  return out;
}

// The closing report on stderr (rank 0): throughput of each phase that ran, over every rank (tokens
// summed, seconds the longest rank's), and this rank's peak memory.
void report(Throughput t, const Device& device, const dist::ParallelState& parallel) {
  if (parallel.distributed()) {
    const Tensor sums = Tensor::from_vector(
        std::vector<double>{double(t.prefill_tokens), double(t.decode_tokens)}, {2});
    const Tensor longest = Tensor::from_vector(
        std::vector<double>{t.prefill_seconds, t.decode_seconds, t.setup_seconds}, {3});
    parallel.world().on(Device::cpu()).all_reduce(sums, dist::ReduceOp::sum)->wait();
    parallel.world().on(Device::cpu()).all_reduce(longest, dist::ReduceOp::max)->wait();
    const std::vector<double> a = sums.to_vector<double>(), b = longest.to_vector<double>();
    t.prefill_tokens = static_cast<int64_t>(a[0]), t.decode_tokens = static_cast<int64_t>(a[1]);
    t.prefill_seconds = b[0], t.decode_seconds = b[1], t.setup_seconds = b[2];
    if (!parallel.is_logging_rank()) return;
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto phase = [](const char* name, int64_t tokens, double seconds) {
    return std::string(name) + " " + std::to_string(tokens) + " tokens in " + std::to_string(seconds) + " s (" +
           std::to_string(seconds > 0 ? static_cast<int64_t>(double(tokens) / seconds) : 0) + " tokens/s)";
  };
  std::string phases = phase(t.scoring ? "scored" : "prefill", t.prefill_tokens, t.prefill_seconds);
  if (!t.scoring) phases += ", " + phase("decode", t.decode_tokens, t.decode_seconds);
  if (t.setup_seconds > 0) phases += " after a decoder set-up of " + std::to_string(t.setup_seconds) + " s";
  const std::string ranks = parallel.distributed() ? " over " + std::to_string(parallel.world_size()) + " ranks" : "";
  std::fprintf(stderr, "generate: %s%s; peak host memory %.1f MiB, peak %s memory %.1f MiB\n", phases.c_str(),
               ranks.c_str(), double(usage.ru_maxrss) / 1024.0, device.str().c_str(),
               double(memory_stats(device).peak_bytes) / (1024.0 * 1024.0));
}

// Scores the --score files and prints the results (rank 0): one file as one JSON object, several as
// one JSON line each, with its "file". One file, or fewer files than ranks: each file split over the
// ranks in turn; otherwise each file whole on one rank, the files dealt by size. A file is read and
// tokenized as it is scored (apps/lib/token_source.h), so memory does not grow with it.
void score(const nn::Megalodon& model, const nn::StreamingOptions& streaming, const Tokenizer& tokenizer,
           const std::vector<int64_t>& file_bytes, const Settings& s, const dist::ParallelState& parallel,
           Throughput& throughput) {
  const dist::ProcessGroup& world = parallel.world();
  const bool whole_files = s.score.size() > 1 && static_cast<int>(s.score.size()) >= world.size();
  std::vector<int> rank_of(s.score.size(), world.rank());  // split: every rank takes part in every file
  if (whole_files) rank_of = assign_by_cost(file_bytes, world.size());
  const bool terminal = isatty(STDERR_FILENO) && parallel.is_logging_rank() && s.score.size() == 1;
  std::vector<std::pair<int64_t, std::string>> mine;  // (file index, JSON) of the results this rank reports
  for (size_t f = 0; f < s.score.size(); ++f) {
    if (rank_of[f] != world.rank()) continue;
    TextFileTokens tokens(s.score[f], tokenizer);
    ScoringOptions options;
    options.streaming = streaming;
    options.buckets = s.score_buckets;
    options.bucket_width = s.score_bucket_width;
    options.byte_count = tokens.predicted_bytes();
    if (terminal)  // the tokens are not known before the file is read: its bytes give the total
      options.progress = [&tokens](int64_t done, int64_t) {
        std::fprintf(stderr, "\rscored %lld tokens, %lld / %lld bytes read", static_cast<long long>(done),
                     static_cast<long long>(tokens.bytes_read()), static_cast<long long>(tokens.bytes()));
      };
    const auto start = std::chrono::steady_clock::now();
    // A split file is cut in parts of an even share of its bytes (its tokens for the byte tokenizer,
    // more than them for SentencePiece), at most kPartTokens each.
    const ScoringResult result =
        whole_files ? score_stream(model, tokens, options)
                    : score_stream_parallel(model, tokens, options, world,
                                            scoring_part_tokens(tokens.bytes(), model.config().chunk_size, world.size()));
    throughput.prefill_seconds += seconds_since(start);
    throughput.prefill_tokens += whole_files || world.rank() == 0 ? result.tokens : 0;
    if (terminal) std::fprintf(stderr, "\n");
    if (!whole_files && world.rank() != 0) continue;  // the split result is the same on every rank
    if (s.score.size() == 1) {
      mine.emplace_back(0, scoring_json(result));
      if (s.score_curve) write_scoring_curve(result, *s.score_curve);
    } else {
      nlohmann::ordered_json line = {{"file", s.score[f]}};
      const nlohmann::ordered_json fields = nlohmann::ordered_json::parse(scoring_json(result));
      for (const auto& [key, value] : fields.items()) line[key] = value;
      mine.emplace_back(static_cast<int64_t>(f), line.dump() + "\n");
    }
  }
  std::printf("%s", gather_in_order(mine, world).c_str());
}

// --prompts-file: a batch per prompt length, in the order lengths first appear; prompt i samples with
// seed + i, so its text does not depend on which rank runs its batch. One rank without --output
// prints each batch's results as the batch ends (in batch order); otherwise each rank runs the batches
// dealt to it (balanced by tokens) and rank 0 prints or writes every result in input order.
void generate_prompts(const nn::Megalodon& model, const nn::StreamingOptions& streaming, const Tokenizer& tokenizer,
                      const std::vector<std::string>& texts, const std::vector<std::vector<int32_t>>& prompts,
                      const Settings& s, const dist::ParallelState& parallel, Throughput& throughput) {
  std::vector<int64_t> length_order;
  std::map<int64_t, std::vector<size_t>> by_length;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto& group = by_length[static_cast<int64_t>(prompts[i].size())];
    if (group.empty()) length_order.push_back(static_cast<int64_t>(prompts[i].size()));
    group.push_back(i);
  }
  const bool streamed = !parallel.distributed() && !s.output;
  std::vector<int64_t> costs;  // the tokens a batch processes
  for (int64_t length : length_order)
    costs.push_back(static_cast<int64_t>(by_length[length].size()) * (length + s.max_new_tokens));
  const std::vector<int> rank_of = assign_by_cost(costs, parallel.world_size());
  std::vector<std::pair<int64_t, std::string>> mine;  // (prompt index, JSON line)
  for (size_t k = 0; k < length_order.size(); ++k) {
    if (rank_of[k] != parallel.world_rank()) continue;
    const std::vector<size_t>& group = by_length[length_order[k]];
    std::vector<std::vector<int32_t>> batch;
    std::vector<uint64_t> seeds;
    for (size_t i : group) batch.push_back(prompts[i]), seeds.push_back(s.seed + i);
    const auto start = std::chrono::steady_clock::now();
    const Throughput before = throughput;
    const std::vector<Completion> done = generate_batch(model, streaming, tokenizer, batch, seeds, s, false, throughput);
    const double seconds = seconds_since(start);
    for (size_t j = 0; j < group.size(); ++j) {
      nlohmann::ordered_json line = {{"index", group[j]},
                                     {"prompt", texts[group[j]]},
                                     {"completion", done[j].text},
                                     {"ids", done[j].ids},
                                     {"finish_reason", done[j].finish_reason}};
      if (s.output) {  // the record of a run: tokens and timings too (the batch's, shared by its prompts)
        line["prompt_tokens"] = prompts[group[j]].size();
        line["tokens"] = done[j].ids.size();
        line["batch_size"] = group.size();
        line["prefill_s"] = throughput.prefill_seconds - before.prefill_seconds;
        line["decode_s"] = throughput.decode_seconds - before.decode_seconds;
        line["seconds"] = seconds;
        line["rank"] = parallel.world_rank();
      }
      const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      if (streamed) std::printf("%s", text.c_str());
      else mine.emplace_back(static_cast<int64_t>(group[j]), text);
    }
    require_output_written();
  }
  if (streamed) return;
  const std::string lines = gather_in_order(mine, parallel.world());
  if (!parallel.is_logging_rank()) return;
  if (s.output) write_file_atomically(*s.output, lines);
  else std::printf("%s", lines.c_str());
}

// The checks of the settings alone: the same on every rank.
void check_settings(const Settings& s) {
  s.sampling.validate();
  MGL_CHECK(!s.score_curve || s.score.size() == 1, "--score-curve takes one --score file, got ", s.score.size());
}

int run(const Settings& s, bool& is_rank0) {
  // Every process is one rank of a data-parallel world (a plain run: one); "cuda" picks the local rank's GPU.
  dist::ParallelOptions grid;
  grid.sizes.data = dist::launched_by_mpi() ? dist::initialize_mpi().size : 1;
  const std::shared_ptr<dist::ParallelState> parallel = dist::ParallelState::create(grid, s.device);
  is_rank0 = parallel->is_logging_rank();
  MGL_CHECK(!is_rank0 || ::fcntl(STDOUT_FILENO, F_GETFD) != -1, "standard output is closed: the results would be lost");
  const Device device = parallel->device();
  MGL_CHECK(device.is_cpu() || cuda_available(), "--device ", s.device, ": ", cuda_unavailable_reason());

  const std::string path = resolve_checkpoint(s.checkpoint);
  const nn::CheckpointInfo info = nn::read_checkpoint_info(path);
  const int64_t vocab = info.model_config.vocab_size;
  const std::unique_ptr<Tokenizer> tokenizer = checkpoint_tokenizer(info.state, s, vocab);
  nn::InitOptions on_device;  // built where it runs: the file's tensors are copied there one at a time
  on_device.device = device;
  nn::Megalodon model(info.model_config, on_device);
  nn::load_checkpoint_model(path, model);
  model.set_compute_dtype(dtype_from_name(s.dtype));
  model.eval();
  nn::StreamingOptions streaming = nn::StreamingOptions::from_config(info.model_config);
  if (s.norm_mode) streaming.timestep_norm_mode = *s.norm_mode;
  // Every input is read and checked before anything is printed.
  std::vector<std::string> texts;  // the prompts (one, or the lines of --prompts-file)
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> score_bytes;  // the size of each --score file
  if (s.prompts_file) {
    std::ifstream in(*s.prompts_file);
    MGL_CHECK(in.good(), "cannot open --prompts-file '", *s.prompts_file, "'");
    for (std::string line; std::getline(in, line);) {
      const std::string where = " (line " + std::to_string(texts.size() + 1) + " of --prompts-file)";
      prompts.push_back(encode_prompt(*tokenizer, line, where, vocab));
      texts.push_back(line);
    }
    MGL_CHECK(!prompts.empty(), "--prompts-file '", *s.prompts_file, "' holds no prompts");
  } else if (!s.score.empty()) {
    for (const std::string& file : s.score) {  // opened and a block read: an unreadable file fails here
      score_bytes.push_back(TextFileTokens(file, *tokenizer).bytes());
      MGL_CHECK(score_bytes.back() >= 2, "--score file '", file, "' holds ", score_bytes.back(),
                " bytes; scoring needs at least two");
    }
  } else if (is_rank0) {  // one prompt: rank 0 generates it (stdin reaches rank 0 only under mpirun)
    texts.push_back(s.prompt        ? *s.prompt
                    : s.prompt_file ? read_file(*s.prompt_file, "prompt file")
                                    : std::string(std::istreambuf_iterator<char>(std::cin), {}));
    prompts.push_back(encode_prompt(*tokenizer, texts.back(), "", vocab));
  }
  if (is_rank0)
    std::fprintf(stderr, "generate: %s (step %lld, %s, %s on %s%s, %s TimestepNorm)\n", path.c_str(),
                 static_cast<long long>(info.state.step), tokenizer->identity().c_str(), s.dtype.c_str(),
                 device.str().c_str(),
                 parallel->distributed() ? (" and " + std::to_string(parallel->world_size() - 1) + " more ranks").c_str()
                                         : "",
                 streaming.timestep_norm_mode.c_str());

  Throughput throughput;
  throughput.scoring = !s.score.empty();
  if (!s.score.empty()) {
    score(model, streaming, *tokenizer, score_bytes, s, *parallel, throughput);
  } else if (s.prompts_file) {
    generate_prompts(model, streaming, *tokenizer, texts, prompts, s, *parallel, throughput);
  } else if (is_rank0) {
    generate_batch(model, streaming, *tokenizer, prompts, {s.seed}, s, true, throughput);
  }
  if (is_rank0) require_output_written();
  report(throughput, device, *parallel);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"generate: text generation and long-context scoring with a MEGALODON checkpoint"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  Settings s;
  app.add_option("--checkpoint", s.checkpoint, "checkpoint file, or a directory of step_<N>.h5 (or a run directory)")
      ->required();
  auto* prompt = app.add_option("--prompt", s.prompt, "the prompt text");
  auto* prompt_file = app.add_option("--prompt-file", s.prompt_file, "a file whose whole text is the prompt");
  auto* prompts_file = app.add_option("--prompts-file", s.prompts_file, "one prompt per line, generated in batches");
  auto* score_file = app.add_option("--score", s.score,
                                    "score these text files instead of generating (JSON to stdout; several: a line each)");
  prompt->excludes(prompt_file, prompts_file, score_file);
  prompt_file->excludes(prompts_file, score_file);
  prompts_file->excludes(score_file);
  app.add_option("--max-new-tokens", s.max_new_tokens, "tokens to generate per prompt (at most)")
      ->check(integer_in(1, kMaxCount));
  app.add_flag("--greedy", s.sampling.greedy, "take the most likely token (same as --temperature 0)");
  app.add_option("--temperature", s.sampling.temperature, "softmax temperature")
      ->check(real_in(SamplingOptions::kTemperatureRange));
  app.add_option("--top-k", s.sampling.top_k, "sample among the k most likely tokens (0: all)")
      ->check(integer_in(0, INT32_MAX));
  app.add_option("--top-p", s.sampling.top_p, "sample in the smallest set of tokens of mass >= p (1: off)")
      ->check(real_in(SamplingOptions::kTopPRange));
  app.add_option("--repetition-penalty", s.sampling.repetition_penalty, "CTRL penalty on tokens already seen (1: off)")
      ->check(real_in(SamplingOptions::kRepetitionPenaltyRange));
  app.add_option("--seed", s.seed, "sampling seed (prompt i of --prompts-file uses seed + i)")
      ->check(integer_in(0, INT64_MAX));
  app.add_option("--stop", s.stops, "stop when this text is generated (repeatable); it is not printed");
  app.add_option("--device", s.device, "auto (CUDA when available), cpu, cuda or cuda:N");
  app.add_option("--dtype", s.dtype, "compute dtype")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--norm-mode", s.norm_mode, "TimestepNorm at inference (default: the model config's)")
      ->check(CLI::IsMember({"windowed", "exact"}));
  app.add_option("--tokenizer-model", s.tokenizer_model,
                 "a SentencePiece .model to use (must be the checkpoint's tokenizer); default: the checkpoint's");
  app.add_option("--score-curve", s.score_curve, "write the loss-vs-position curve here (.json, else TSV)")
      ->needs(score_file);
  app.add_option("--out,--output", s.output, "write the --prompts-file results here, a JSON line each in input order")
      ->needs(prompts_file);
  app.add_option("--score-buckets", s.score_buckets, "position buckets of the curve")
      ->check(CLI::IsMember({"log2", "linear"}));
  app.add_option("--score-bucket-width", s.score_bucket_width, "positions per bucket for --score-buckets linear")
      ->check(integer_in(1, kMaxCount));
  if (auto status = parse_command_line(app, argc, argv, "generate")) return *status;
  bool is_rank0 = dist::launcher_rank() == 0;
  // Bad settings fail alike on every rank: the ranks agree that rank 0 reports them (apps/lib/app_errors.h).
  if (auto status = settle_setup("generate: ", is_rank0, [&] { check_settings(s); })) return *status;
  try {
    return run(s, is_rank0);
  } catch (const std::exception& e) {
    return report_fatal_error("generate: ", e.what(), is_rank0);
  }
}
