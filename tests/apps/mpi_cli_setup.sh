# Sourced by the CLI tests that run mpirun (train_parallel_cli.sh, generate_parallel_cli.sh): mpirun must
# be there; a scratch directory, removed on exit, becomes the working directory; fail() counts failures;
# Open MPI may run as root and oversubscribe the cores; and "${mpi[@]}" is mpirun under a timeout, so that
# a hang fails the test instead of blocking CI (a healthy job here takes seconds, even oversubscribed);
# job_timed_out and no_rank_left check how a job ended.
command -v mpirun >/dev/null || { echo "FAIL: mpirun is missing (openmpi-bin; tools/install_deps.sh installs it)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi=(timeout -k 10 240 mpirun --oversubscribe)

# job_timed_out "what" status: true (and a failure) when timeout ended the job, i.e. it hung.
job_timed_out() {
  if [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; then fail "$1: the job did not end (killed by timeout)"; return 0; fi
  return 1
}

# no_rank_left "what" pattern: no process whose command line holds the pattern outlives its job (a few
# seconds of grace for mpirun's clean-up).
no_rank_left() {
  for _ in $(seq 1 100); do
    pgrep -f -- "$2" >/dev/null || return 0
    sleep 0.1
  done
  fail "$1: processes outlived the job: $(pgrep -af -- "$2")"
}
