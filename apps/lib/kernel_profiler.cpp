#include "apps/lib/kernel_profiler.h"

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/lib/files.h"
#include "base/error.h"
#include "core/cuda_context.h"

namespace mgl::apps {

namespace {

// A short name is cut down (deepest template arguments first) until it fits this many characters.
constexpr size_t kShortNameLength = 100;

const char* kind_name(cuda::ActivityKind kind) {
  switch (kind) {
    case cuda::ActivityKind::kernel: return "kernel";
    case cuda::ActivityKind::memcpy: return "memcpy";
    case cuda::ActivityKind::memset: return "memset";
  }
  return "?";
}

std::string demangle(const std::string& name) {
  if (name.rfind("_Z", 0) != 0) return name;  // not a mangled C++ name (cuBLAS's kernels, extern "C")
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status), std::free);
  return status == 0 && text ? std::string(text.get()) : name;
}

// "f<int>(float const*, long)" -> "f<int>": the last balanced parenthesised group, when the name ends with one.
std::string without_parameters(const std::string& name) {
  if (name.empty() || name.back() != ')') return name;
  int depth = 0;
  for (size_t i = name.size(); i-- > 0;) {
    if (name[i] == ')') ++depth;
    if (name[i] == '(' && --depth == 0) return name.substr(0, i);
  }
  return name;
}

bool is_identifier_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Drops every qualifier "ns::" and "(anonymous namespace)::"; a qualifier that is itself a template-id
// ("Policy<float>::Inner") stays, since its arguments are what tells the instantiations apart.
std::string without_qualifiers(const std::string& name) {
  static const std::string anonymous = "(anonymous namespace)";
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name.compare(i, 2, "::") != 0) {
      out += name[i];
      continue;
    }
    if (out.size() >= anonymous.size() && out.compare(out.size() - anonymous.size(), anonymous.size(), anonymous) == 0) {
      out.resize(out.size() - anonymous.size());
    } else if (!out.empty() && is_identifier_char(out.back())) {
      while (!out.empty() && is_identifier_char(out.back())) out.pop_back();
    } else {
      out += "::";
    }
    ++i;  // the second ':'
  }
  return out;
}

// Replaces the arguments of every template argument list at nesting depth >= `depth` (1: the outermost)
// by "…".
std::string collapse_templates(const std::string& name, int depth) {
  std::string out;
  int level = 0;
  for (char c : name) {
    if (c == '<' && ++level == depth) {
      out += "<…";
      continue;
    }
    if (c == '>' && level-- == depth) {
      out += '>';
      continue;
    }
    if (level < depth) out += c;
  }
  return out;
}

int template_depth(const std::string& name) {
  int level = 0, deepest = 0;
  for (char c : name) {
    if (c == '<') deepest = std::max(deepest, ++level);
    if (c == '>') --level;
  }
  return deepest;
}

std::string display_name(cuda::ActivityKind kind, const std::string& name) {
  switch (kind) {
    case cuda::ActivityKind::kernel: return short_kernel_name(name);
    case cuda::ActivityKind::memcpy: return "[memcpy " + name + "]";
    case cuda::ActivityKind::memset: return "[memset]";
  }
  return name;
}

double per_step(double total, int64_t steps) { return total / static_cast<double>(steps); }

}  // namespace

std::string short_kernel_name(const std::string& name) {
  std::string s = without_parameters(demangle(name));
  if (s.rfind("void ", 0) == 0) s.erase(0, 5);  // a function template's return type
  s = without_qualifiers(s);
  for (int depth = template_depth(s); depth >= 1 && s.size() > kShortNameLength; --depth)
    s = collapse_templates(s, depth);
  return s;
}

void ActivityLog::add(const cuda::Activity& activity) {
  if (activity.start_ns == 0 || activity.end_ns < activity.start_ns) {
    ++untimed_;
    return;
  }
  Totals& t = totals_[{activity.kind, activity.name}];
  t.count += 1;
  t.total_ns += activity.end_ns - activity.start_ns;
  window_start_ = std::min(window_start_, activity.start_ns);
  window_end_ = std::max(window_end_, activity.end_ns);
}

void ActivityLog::close_window() {
  if (window_end_ > window_start_) span_ns_ += window_end_ - window_start_;
  window_start_ = UINT64_MAX;
  window_end_ = 0;
}

KernelProfile ActivityLog::summary(int64_t steps) const {
  MGL_CHECK(steps >= 1, "a kernel profile covers at least one step, got ", steps);
  KernelProfile p;
  p.steps = steps;
  p.untimed = untimed_;
  p.dropped = dropped_;
  p.span_ms = static_cast<double>(span_ns_) * 1e-6;
  std::map<std::pair<cuda::ActivityKind, std::string>, KernelStats> rows;  // by display name
  for (const auto& [key, totals] : totals_) {
    const std::string name = display_name(key.first, key.second);
    KernelStats& row = rows[{key.first, name}];
    row.name = name;
    row.kind = key.first;
    row.count += totals.count;
    row.total_ms += static_cast<double>(totals.total_ns) * 1e-6;
    p.activities += totals.count;
    p.busy_ms += static_cast<double>(totals.total_ns) * 1e-6;
  }
  for (auto& [key, row] : rows) {
    row.share = p.busy_ms > 0 ? row.total_ms / p.busy_ms : 0.0;
    p.rows.push_back(row);
  }
  std::stable_sort(p.rows.begin(), p.rows.end(),
                   [](const KernelStats& a, const KernelStats& b) { return a.total_ms > b.total_ms; });
  return p;
}

std::string format_profile_table(const KernelProfile& p, int64_t top) {
  char line[512];
  std::string text;
  const double busy = per_step(p.busy_ms, p.steps), span = per_step(p.span_ms, p.steps);
  std::snprintf(line, sizeof(line),
                "kernel profile, %lld step(s); per step: GPU busy %.3f ms over a span of %.3f ms (%.1f%%), "
                "%.0f activities\n",
                static_cast<long long>(p.steps), busy, span, span > 0 ? 100.0 * busy / span : 0.0,
                per_step(static_cast<double>(p.activities), p.steps));
  text += line;
  if (p.dropped > 0 || p.untimed > 0) {
    std::snprintf(line, sizeof(line), "warning: %llu record(s) dropped (CUPTI had no buffer), %lld without timestamps: "
                  "the figures miss them\n", static_cast<unsigned long long>(p.dropped), static_cast<long long>(p.untimed));
    text += line;
  }
  text += "  share  ms/step   total ms    count    mean µs  name\n";
  const size_t shown = std::min(p.rows.size(), static_cast<size_t>(std::max<int64_t>(top, 0)));
  for (size_t i = 0; i < shown; ++i) {
    const KernelStats& r = p.rows[i];
    std::snprintf(line, sizeof(line), "%6.1f%% %8.3f %10.3f %8lld %10.1f  %s\n", 100.0 * r.share,
                  per_step(r.total_ms, p.steps), r.total_ms, static_cast<long long>(r.count), r.mean_us(),
                  r.name.c_str());
    text += line;
  }
  if (shown < p.rows.size()) {
    double rest_ms = 0;
    int64_t rest_count = 0;
    for (size_t i = shown; i < p.rows.size(); ++i) {
      rest_ms += p.rows[i].total_ms;
      rest_count += p.rows[i].count;
    }
    std::snprintf(line, sizeof(line), "%6.1f%% %8.3f %10.3f %8lld %10s  (%zu more names)\n",
                  p.busy_ms > 0 ? 100.0 * rest_ms / p.busy_ms : 0.0, per_step(rest_ms, p.steps), rest_ms,
                  static_cast<long long>(rest_count), "", p.rows.size() - shown);
    text += line;
  }
  return text;
}

std::string profile_json(const KernelProfile& p) {
  using json = nlohmann::ordered_json;
  json rows = json::array();
  for (const KernelStats& r : p.rows)
    rows.push_back({{"name", r.name},
                    {"kind", kind_name(r.kind)},
                    {"count", r.count},
                    {"total_ms", r.total_ms},
                    {"ms_per_step", per_step(r.total_ms, p.steps)},
                    {"mean_us", r.mean_us()},
                    {"share", r.share}});
  const json out{{"steps", p.steps},
                 {"busy_ms_per_step", per_step(p.busy_ms, p.steps)},
                 {"span_ms_per_step", per_step(p.span_ms, p.steps)},
                 {"activities", p.activities},
                 {"dropped_records", p.dropped},
                 {"untimed_records", p.untimed},
                 {"kernels", rows}};
  return out.dump(2) + "\n";
}

KernelProfiler::KernelProfiler(const Device& device) : device_(device) { require_device(device); }

void KernelProfiler::require_device(const Device& device) {
  MGL_CHECK(device.is_cuda(), "--profile records GPU kernels (CUPTI) and needs a CUDA device; this run is on ",
            device.str(), cuda_built() ? "" : " (this build has no CUDA)");
  require_cuda(device, "--profile");
}

KernelProfiler::~KernelProfiler() {
  if (!recording_) return;
  try {
    pause();
  } catch (const Error&) {
    // Unwinding from another error: that one is reported.
  }
}

void KernelProfiler::resume() {
  MGL_CHECK(!recording_, "KernelProfiler::resume: already recording");
  MGL_ON_CUDA(cuda::start_activity_recording([this](const cuda::Activity& a) { log_.add(a); }));
  recording_ = true;
}

void KernelProfiler::pause() {
  MGL_CHECK(recording_, "KernelProfiler::pause: not recording");
  synchronize(device_);  // every kernel of the window has ended, so its record is complete
  MGL_ON_CUDA(log_.add_dropped(cuda::stop_activity_recording()));
  recording_ = false;
  log_.close_window();
}

void report_profile(const KernelProfile& profile, const ProfileOptions& options, std::FILE* out) {
  if (out) std::fputs(format_profile_table(profile, options.top).c_str(), out);
  if (!options.json.empty()) write_file_atomically(options.json, profile_json(profile));
}

}  // namespace mgl::apps
