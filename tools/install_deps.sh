#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages megalodon.cpp builds against. Idempotent; uses sudo when not root.
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is not a Debian package here: it is expected at /usr/local/cuda
# and the build turns the CUDA backend off when nvcc is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache
  libopenblas-dev                       # CPU GEMM
  libhdf5-dev hdf5-tools                # checkpoints (h5dump to inspect them)
  libopenmpi-dev openmpi-bin            # multi-process launch and CPU collectives
  catch2                                # tests
  libcli11-dev nlohmann-json3-dev       # command lines, configs and metrics
  libsentencepiece-dev sentencepiece    # subword tokenizers (optional in the build)
  zlib1g-dev                            # compressed corpora
  dict-gcide                            # the default training corpus (GCIDE dictionary, GPL text)
  gnuplot-nox                           # tools/plot_metrics.sh: training curves as PNG
  clang libclang-rt-dev llvm            # the sanitizer build and fuzzers: clang, its ASan/UBSan/libFuzzer
                                        # runtimes, llvm-symbolizer for reports with file:line
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
