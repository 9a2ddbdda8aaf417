# Sourced by the one-process CLI tests (train_cli.sh, convert_cli.sh, errors_cli.sh): a scratch directory,
# removed on exit, becomes the working directory; fail() counts failures; expect_error and expect_usage check
# that a command fails with exit status 1 or 2 (docs/reliability.md) and a message; corpus_sample writes the
# start of the default corpus to corpus.txt; finish reports.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_status STATUS "what" "message part" command...: that exit status and the message part on stderr.
expect_status() {
  local wanted="$1" what="$2" part="$3"
  shift 3
  "$@" >"$work/out.txt" 2>"$work/err.txt"
  local status=$?
  if [ "$status" -ne "$wanted" ]; then fail "$what: exit status $status, expected $wanted"; fi
  if ! grep -q -- "$part" "$work/err.txt"; then fail "$what: stderr lacks '$part':"; cat "$work/err.txt"; fi
}
# expect_error: a failure while running (status 1); expect_usage: a bad command line (status 2).
expect_error() { expect_status 1 "$@"; }
expect_usage() { expect_status 2 "$@"; }

# corpus_sample BYTES: the first BYTES of the GCIDE dictionary (dict-gcide) into corpus.txt.
corpus_sample() {
  local corpus="${MGL_DEFAULT_CORPUS:-/usr/share/dictd/gcide.dict.dz}"
  [ -f "$corpus" ] || { echo "FAIL: $corpus missing (dict-gcide; tools/install_deps.sh installs it)"; exit 1; }
  head -c "$1" < <(zcat "$corpus") > corpus.txt
}

# finish NAME: the exit status of the test, with a last line saying how it went.
finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)"
    exit 1
  fi
  echo "$1: all checks passed"
}
