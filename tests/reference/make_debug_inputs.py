"""Makes the inputs of the debug-state agreement test and the reference outputs.

Writes into --out-dir:
  config.json  the model config, every key of MegalodonConfig::to_json (what `debug_state --config` reads);
  W.h5         one float32 dataset per parameter, named by its official state_dict name, plus `input_ids`
               and `targets` (int64, B × L). Parameters: docs/megalodon.md §2.9 init, then N(0, 0.2²)
               added to everything §2.9 initialises to a constant (norm scales/shifts, biases, q/k
               gamma/beta) and to the imaginary part of CEMA gamma, so that every term and every gradient
               path is non-trivial;
  R.h5         the reference, computed by megalodon_ref.py in float64 from exactly the float32 values in W.h5:
               `logits` (B, L, vocab), `loss` (scalar, shape ()), `grads/<name>` for every parameter — the
               layout of the engine's S.h5, in float64. Attribute `parameter_names` keeps the order.

Usage:
  python3 tests/reference/make_debug_inputs.py --config test --out-dir /tmp/dbg
  python3 tests/reference/make_debug_inputs.py --config '{"model_dim": 64, ...}' --set swiglu=false \\
      --batch 2 --seq-len 48 --seed 3 --out-dir /tmp/dbg
--config takes a preset name, JSON text or a JSON file (applied over the defaults, as in the engine).
"""

import argparse
import json
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import megalodon_ref as ref  # noqa: E402


def parse_overrides(items):
    """key=value pairs; the value is JSON when it parses (numbers, true/false), else a string."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise SystemExit("--set expects key=value, got '%s'" % item)
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="preset name, JSON text or JSON file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=None, help="default: 3 × chunk_size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the float64 reference runs (cpu or cuda)")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    cfg = ref.make_config(args.config, parse_overrides(args.set))
    B = args.batch
    L = args.seq_len if args.seq_len is not None else 3 * cfg["chunk_size"]
    if L > cfg["chunk_size"] and L % cfg["chunk_size"]:
        raise SystemExit("--seq-len %d must be at most chunk_size %d or a multiple of it" % (L, cfg["chunk_size"]))
    os.makedirs(args.out_dir, exist_ok=True)

    params = ref.perturb_zero_initialised(ref.init_parameters(cfg, args.seed), args.seed + 1)
    params = {k: v.float() for k, v in params.items()}  # what W.h5 stores; the reference uses these values
    gen = torch.Generator().manual_seed(args.seed + 2)
    input_ids = torch.randint(0, cfg["vocab_size"], (B, L), generator=gen)
    targets = torch.randint(0, cfg["vocab_size"], (B, L), generator=gen)
    config_json = ref.config_to_json(cfg)

    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        f.write(config_json + "\n")
    with h5py.File(os.path.join(args.out_dir, "W.h5"), "w") as f:
        f.attrs["config"] = config_json
        for name, value in params.items():
            f.create_dataset(name, data=value.numpy().astype(np.float32))
        f.create_dataset("input_ids", data=input_ids.numpy().astype(np.int64))
        f.create_dataset("targets", data=targets.numpy().astype(np.int64))

    start = time.time()
    device = torch.device(args.device)
    params64 = {k: v.to(device=device, dtype=torch.float64) for k, v in params.items()}
    logits, loss, grads = ref.loss_and_gradients(params64, cfg, input_ids.to(device), targets.to(device))
    elapsed = time.time() - start

    with h5py.File(os.path.join(args.out_dir, "R.h5"), "w") as f:
        f.attrs["config"] = config_json
        f.attrs["parameter_names"] = json.dumps(list(grads.keys()))
        f.create_dataset("logits", data=logits.cpu().numpy())
        f.create_dataset("loss", data=np.float64(loss.item()))
        for name, g in grads.items():
            f.create_dataset("grads/" + name, data=g.cpu().numpy())

    print("%s: %d parameters, B=%d L=%d, reference loss %.6f (float64, %s, %.1fs) -> %s"
          % (cfg["name"], ref.parameter_count(cfg), B, L, loss.item(), args.device, elapsed, args.out_dir))


if __name__ == "__main__":
    main()
