#!/usr/bin/env bash
# bench_train and the --profile flags on the CPU (CTest: apps_bench_train_cli): a tiny config times its
# steps and writes the JSON keys tools/bench_reference.py writes too; --profile without a GPU, and a
# profile flag without --profile, are clear errors in bench_train and train alike.
#   tests/apps/bench_train_cli.sh path/to/bin
set -uo pipefail
bin="$(realpath "${1:?usage: bench_train_cli.sh path/to/bin}")"
# shellcheck source=tests/apps/cli_setup.sh
source "$(dirname "$(realpath "$0")")/cli_setup.sh"

bench=("$bin/bench_train" --config tiny --device cpu --batch 2 --seq-len 64 --warmup 1 --steps 3)
"${bench[@]}" --json bench.json >bench.txt 2>&1 || fail "the tiny benchmark failed: $(tail -3 bench.txt)"
grep -q "2 x 64 = 128 tokens per step; median of 3 steps after 1 warm-up" bench.txt || fail "no header: $(cat bench.txt)"
grep -q "^| tokens/s | step ms (median / min / max) |" bench.txt || fail "no table: $(cat bench.txt)"
python3 - bench.json <<'EOF' || fail "bench.json: see above"
import json, sys
r = json.load(open(sys.argv[1]))
keys = ["implementation", "config", "device", "dtype", "batch", "seq_len", "tokens_per_step", "warmup", "steps",
        "parameters", "tokens_per_s", "step_ms", "phase_ms", "flops_per_token", "peak_tflops", "mfu", "peak_memory_gib"]
missing = [k for k in keys if k not in r]
assert not missing, "missing keys %s" % missing
assert r["tokens_per_step"] == 128 and r["steps"] == 3 and r["device"] == "cpu" and r["dtype"] == "f32", r
ms = r["step_ms"]
assert 0 < ms["min"] <= ms["median"] <= ms["max"], ms
assert set(r["phase_ms"]) == {"forward", "backward", "optimizer"}, r["phase_ms"]
assert all(v > 0 for v in r["phase_ms"].values()), r["phase_ms"]
assert abs(r["tokens_per_s"] - 128 / (ms["median"] / 1e3)) < 1e-6 * r["tokens_per_s"], r
assert r["flops_per_token"] > 0 and r["parameters"] > 0 and r["peak_memory_gib"] > 0, r
assert r["peak_tflops"] is None and r["mfu"] is None, r  # no default peak on the CPU
EOF
"${bench[@]}" --peak-tflops 0.5 --json peak.json >/dev/null 2>&1 || fail "--peak-tflops failed"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["peak_tflops"] == 0.5 and r["mfu"] > 0, r' \
  peak.json || fail "--peak-tflops does not give an MFU"

expect_error "bench_train --profile on the CPU" "bench_train: error: --profile records GPU kernels (CUPTI) and needs a CUDA device" \
  "${bench[@]}" --profile
expect_usage "bench_train --profile-json alone" "bench_train: error: --profile-json requires --profile" \
  "${bench[@]}" --profile-json p.json
expect_error "bench_train on a grid" "bench_train times one process on one device" "${bench[@]}" --set parallel.data=2
expect_error "train --profile on the CPU" "train: error: --profile records GPU kernels (CUPTI) and needs a CUDA device" \
  "$bin/train" --device cpu --profile --out run
expect_usage "train --profile-after alone" "train: error: --profile-after requires --profile" \
  "$bin/train" --profile-after 2
finish bench_train_cli
