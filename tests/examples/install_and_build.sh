#!/usr/bin/env bash
# The CMake package end to end (CTest: examples_against_install): installs the built library into a scratch
# prefix, checks the layout, configures and builds examples/ against it as another project would, and runs
# both programs (each checks its own results and exits non-zero when they are wrong).
#   tests/examples/install_and_build.sh BUILD_DIR SOURCE_DIR CXX_COMPILER
set -euo pipefail
build="$(realpath "$1")"
source="$(realpath "$2")"
compiler="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
for file in include/megalodon/ops/ops.h include/megalodon/autograd/node.h include/megalodon/nn/megalodon.h; do
  [ -f "$work/prefix/$file" ] || { echo "FAIL: the install lacks $file"; exit 1; }
done
config="$(find "$work/prefix" -name megalodonConfig.cmake)"
[ -n "$config" ] || { echo "FAIL: the install lacks megalodonConfig.cmake"; exit 1; }
[ ! -d "$work/prefix/include/megalodon/ops/detail" ] || { echo "FAIL: ops/detail (not API) was installed"; exit 1; }

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$source/examples" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$compiler" "${launcher[@]}" >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j 2 >"$work/build.log" || { cat "$work/build.log"; exit 1; }
"$work/build/autograd_basics"
"$work/build/custom_op"
echo "examples: built against the installed package and ran"
