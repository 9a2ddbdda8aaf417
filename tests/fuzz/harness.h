#pragma once
// What the fuzz harnesses of tests/fuzz share (docs/reliability.md, "Fuzzing"). Each harness is a libFuzzer
// target: LLVMFuzzerTestOneInput receives one input, hands it to the code under test as the apps do (written
// to a file that is then loaded) and returns. An mgl::Error is how that code refuses bad input (base/error.h),
// so it is an expected outcome; a finding is any other exception escaping, a sanitizer report (ASan, UBSan,
// LeakSanitizer), a crash, or an input that runs past libFuzzer's -timeout or -rss_limit_mb.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mgl::fuzz {

// The path of `name` ("meta.json", "data/train.bin") in this process's scratch folder (tests/support/scratch.h:
// made on first use, removed at exit; a crash leaves it, named by the pid); its parent folders are made.
std::string scratch_path(const std::string& name);
// Writes `bytes` to scratch_path(name) and returns that path.
std::string write_scratch_file(const std::string& name, std::string_view bytes);

// Runs `body`. Returns when it succeeds or throws mgl::Error; any other exception is printed with its type,
// then abort() makes it a crash, for which libFuzzer saves the input.
void expect_success_or_error(const std::function<void()>& body);

// A property the harness checks of what the code under test returned: false prints `what` and aborts (a finding).
void require(bool condition, const std::string& what);

// An input holding several files: their bytes separated by kPartSeparator (a seed is the files joined by it).
inline constexpr std::string_view kPartSeparator = "\n--mgl-fuzz-part--\n";
std::vector<std::string_view> split_parts(std::string_view input);

}  // namespace mgl::fuzz
