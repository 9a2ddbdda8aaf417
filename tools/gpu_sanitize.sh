#!/usr/bin/env bash
# Run on the GPU machine (H100/H200): builds build-gpu for sm_90 (as tools/gpu_check.sh) and runs every test
# labelled "cuda" under NVIDIA's compute-sanitizer, once with memcheck (out-of-bounds and misaligned device
# accesses, bad frees, errors of CUDA API calls) and once with racecheck (shared-memory races); prints a table
# last: test, tool, errors (docs/reliability.md, "GPU sanitizers").
#   tools/gpu_sanitize.sh                    # every cuda test, both tools
#   tools/gpu_sanitize.sh -R cema            # ctest arguments select the tests (always within -L cuda)
#   TOOLS=memcheck tools/gpu_sanitize.sh     # one tool
# Each run keeps its test's CTest timeout (1500 s when the test sets none; TIMEOUT_S overrides it); a test under
# mpirun runs every rank under the sanitizer. Logs: $OUT (default ./gpu_sanitize_out)/<test>.<tool>.log.
# Exits 1 when a run reports an error, fails or times out.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu_sanitize_out}"
tools="${TOOLS:-memcheck racecheck}"
sanitizer="${COMPUTE_SANITIZER:-/usr/local/cuda/bin/compute-sanitizer}"
mkdir -p "$out"
[ -x "$sanitizer" ] || { echo "gpu_sanitize: no compute-sanitizer at $sanitizer (set COMPUTE_SANITIZER)" >&2; exit 2; }
export NCCL_NVLS_ENABLE=0

echo "== build"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/configure.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" >"$out/build.log" 2>&1 ||
  { grep -E "error" -A3 "$out/build.log" | head -60; echo "gpu_sanitize: the build failed ($out/build.log)"; exit 1; }

# One line per test, its fields separated by \x1e: name, working directory, timeout, environment and command,
# the lists joined by \x1f (separators that are not white space, so that an empty field stays a field), and
# the command split where the test binary starts (before it: mpiexec and its arguments, if any; a command
# without a test binary is run whole under the sanitizer).
tests="$(ctest --test-dir build-gpu -L cuda "$@" --show-only=json-v1 | python3 -c '
import json, os, sys
binaries = os.path.realpath("build-gpu") + "/tests/"
for test in json.load(sys.stdin)["tests"]:
    props = {p["name"]: p["value"] for p in test.get("properties", [])}
    if "FIXTURES_SETUP" in props or "FIXTURES_CLEANUP" in props:
        continue  # the scratch folder's fixture (tests/CMakeLists.txt): no GPU code to check
    command = test["command"]
    start = next((i for i, arg in enumerate(command) if os.path.realpath(arg).startswith(binaries)), 0)
    print("\x1e".join([test["name"], props.get("WORKING_DIRECTORY", "."), str(int(props.get("TIMEOUT", 1500))),
                     "\x1f".join(props.get("ENVIRONMENT", [])), "\x1f".join(command[:start]),
                     "\x1f".join(command[start:])]))
')" || { echo "gpu_sanitize: cannot list the tests" >&2; exit 1; }
[ -n "$tests" ] || { echo "gpu_sanitize: no cuda test matches" >&2; exit 2; }

# errors LOG: the errors compute-sanitizer counted, summed over the processes of the run.
errors() {
  { grep -oE "ERROR SUMMARY: [0-9]+ error" "$1" | grep -oE "[0-9]+"
    grep -oE "RACECHECK SUMMARY: [0-9]+ hazards? displayed \([0-9]+ error" "$1" | grep -oE "[0-9]+ error" |
      grep -oE "[0-9]+"; } | awk '{ n += $1 } END { print n + 0 }'
}

# nccl_probes LOG: how many of those errors are the API error NCCL raises and handles inside its own
# initialisation (docs/reliability.md, "GPU sanitizers"): "no kernel image is available" from a
# cudaFuncGetAttributes whose first caller below the driver is libnccl. They are not ours: not counted.
nccl_probes() {
  awk '/Program hit cudaErrorNoKernelImageForDevice .* cudaFuncGetAttributes/ { probe = 1; next }
       probe && /Host Frame:/ && !/libcuda\.so/ { if (/libnccl\.so/) n++; probe = 0 }
       END { print n + 0 }' "$1"
}

echo "== sanitizers: $tools over $(wc -l <<<"$tests") tests"
table=() status=0
while IFS=$'\x1e' read -r name directory limit environment launcher command; do
  IFS=$'\x1f' read -ra environment <<<"$environment"
  IFS=$'\x1f' read -ra launcher <<<"$launcher"
  IFS=$'\x1f' read -ra command <<<"$command"
  for tool in $tools; do
    log="$out/$name.$tool.log"
    start=$SECONDS
    (cd "$directory" && env "${environment[@]}" timeout "${TIMEOUT_S:-$limit}" "${launcher[@]}" "$sanitizer" \
      --tool "$tool" --print-limit 100 "${command[@]}") </dev/null >"$log" 2>&1  # mpirun would read the list
    code=$?
    probes="$(nccl_probes "$log")"
    count=$(( $(errors "$log") - probes ))
    case "$code" in
      0) result="$count" ;;
      77) result="skipped (no GPU)" ;;
      124) result="timeout after ${TIMEOUT_S:-$limit} s ($count so far)"; status=1 ;;
      *) result="$count (the test failed: exit $code)"; status=1 ;;
    esac
    [ "$count" -eq 0 ] || status=1
    [ "$probes" -eq 0 ] || result="$result (+ $probes of NCCL's own probes)"
    echo "$name $tool: $result ($(( SECONDS - start )) s)"
    table+=("$(printf '%-48s %-10s %s' "$name" "$tool" "$result")")
  done
done <<<"$tests"

echo "== summary (logs in $out)"
printf '%-48s %-10s %s\n' test tool errors
printf '%s\n' "${table[@]}"
exit $status
