# Sourced by the CLI tests that run mpirun (train_parallel_cli.sh, generate_parallel_cli.sh): mpirun must
# be there; a scratch directory, removed on exit, becomes the working directory; fail() counts failures;
# Open MPI may run as root and oversubscribe the cores; and "${mpi[@]}" is mpirun under a timeout, so that
# a hang fails the test instead of blocking CI (a healthy job here takes seconds, even oversubscribed).
command -v mpirun >/dev/null || { echo "FAIL: mpirun is missing (openmpi-bin; tools/install_deps.sh installs it)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi=(timeout -k 10 240 mpirun --oversubscribe)
