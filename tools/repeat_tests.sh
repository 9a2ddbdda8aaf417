#!/usr/bin/env bash
# Runs the built CTest suite N times to find flaky tests (issue 15 item 9). Every randomized test draws a
# fresh seed per run (tests/support/testing.h fresh_seed, shared over the ranks of an MPI test) and prints it
# when it fails, so N runs try N × (its draws) inputs; a test that fails once in forty runs shows up at
# N = 50 with probability 1 - (39/40)^50 = 72%, and at N = 200 with 99%.
#   tools/repeat_tests.sh N [ctest arguments, e.g. -L mpi or -R trainer]
# Prints each failing test with the run it failed in, a count per test, and exits 1 if any run failed.
# The logs of failed runs stay in $OUT (default build/repeat_tests).
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:?usage: tools/repeat_tests.sh N [ctest arguments]}"
shift
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "repeat_tests: N must be a positive integer, got '$runs'" >&2; exit 2; }
[ -d build ] || { echo "repeat_tests: no build/ here: run tools/build.sh (or tools/test.sh) first" >&2; exit 2; }
out="${OUT:-$PWD/build/repeat_tests}"
mkdir -p "$out"
: > "$out/failures.txt"
start=$SECONDS
for (( i = 1; i <= runs; i++ )); do
  log="$out/run_$i.log"
  if ctest --test-dir build -j "$(nproc)" --output-on-failure "$@" > "$log" 2>&1; then
    rm -f "$log"
  else
    sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (\(Failed\|Timeout\|SEGFAULT\|Exception\|Child aborted\)).*/\1/p' "$log" |
      sed "s/^/run $i: /" | tee -a "$out/failures.txt"
  fi
  echo "repeat_tests: run $i/$runs done ($(( SECONDS - start )) s; $(wc -l < "$out/failures.txt") failures so far)"
done
if [ -s "$out/failures.txt" ]; then
  echo "repeat_tests: failures per test over $runs runs (logs in $out):"
  sed 's/^run [0-9]*: //' "$out/failures.txt" | sort | uniq -c | sort -rn
  exit 1
fi
echo "repeat_tests: $runs runs, no failure"
