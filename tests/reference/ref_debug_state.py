"""The debug-state tool's command line, implemented by the PyTorch reference instead of the C++ engine.

  python3 tests/reference/ref_debug_state.py --weights W.h5 --config CFG.json --out S.h5 \\
      [--device cpu|cuda] [--dtype f32|f64]

Reads W.h5 (parameters, input_ids, targets) and writes S.h5 (logits, loss, grads/<name>, float32), exactly
like `build/bin/debug_state`. Uses: checking the agreement pipeline without the engine
(check_reference.sh accepts it in place of the binary), and measuring the error that plain float32
arithmetic of the same model has against the float64 reference, as a baseline for tolerances.
"""

import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ next to the sources
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import megalodon_ref as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=("f32", "f64"))
    args = ap.parse_args()

    cfg = ref.make_config(args.config)
    dtype = {"f32": torch.float32, "f64": torch.float64}[args.dtype]
    device = torch.device(args.device)
    with h5py.File(args.weights, "r") as f:
        params = {name: torch.from_numpy(np.asarray(f[name][()])).to(device=device, dtype=dtype)
                  for name in ref.parameter_shapes(cfg)}
        input_ids = torch.from_numpy(np.asarray(f["input_ids"][()])).to(device)
        targets = torch.from_numpy(np.asarray(f["targets"][()])).to(device)
    logits, loss, grads = ref.loss_and_gradients(params, cfg, input_ids, targets)
    with h5py.File(args.out, "w") as f:
        f.create_dataset("logits", data=logits.float().cpu().numpy())
        f.create_dataset("loss", data=np.float32(loss.item()))
        for name, g in grads.items():
            f.create_dataset("grads/" + name, data=g.float().cpu().numpy())
    print("loss %.6f -> %s" % (loss.item(), args.out))


if __name__ == "__main__":
    main()
