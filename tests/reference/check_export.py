"""Checks an export directory of build/bin/convert against the official layout and the PyTorch reference.

1. tools/convert_pth.py to-pth, then from-pth, gives back every tensor bit for bit and the same config.json;
   consolidated.pth holds the official state_dict (output.output.weight beside embed.weight when the head is tied).
2. The weights, loaded from consolidated.pth into the reference model (megalodon_ref.py, float64), give the logits
   that the engine computed from the export (debug_state's S.h5 on the batch B.h5) within --tol.

Needs PyTorch, numpy and h5py, like the other reference scripts (the GPU machine has them; docs/interop.md):
  build/bin/debug_state --weights EXPORT_DIR --batch B.h5 --out S.h5
  python3 tests/reference/check_export.py EXPORT_DIR B.h5 S.h5 [--tol 1e-4]
"""

import argparse
import json
import os
import sys
import tempfile

import h5py
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import convert_pth  # noqa: E402
import megalodon_ref as ref  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir")
    parser.add_argument("batch", help="HDF5 file with input_ids and targets")
    parser.add_argument("state", help="debug_state's S.h5 for the export and the batch")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest relative error of the logits")
    args = parser.parse_args()
    failures = []

    tensors, metadata = convert_pth.read_safetensors(os.path.join(args.export_dir, "model.safetensors"))
    with open(os.path.join(args.export_dir, "config.json")) as f:
        model_conf = json.load(f)
    with tempfile.TemporaryDirectory() as scratch:
        official, back = os.path.join(scratch, "official"), os.path.join(scratch, "back")
        convert_pth.to_pth(args.export_dir, official, "keep")
        convert_pth.from_pth(official, back)
        state_dict = torch.load(os.path.join(official, "consolidated.pth"), map_location="cpu", weights_only=True)
        again, _ = convert_pth.read_safetensors(os.path.join(back, "model.safetensors"))
        with open(os.path.join(back, "config.json")) as f:
            if json.load(f) != model_conf:
                failures.append("config.json differs after to-pth and from-pth")
    if list(again) != list(tensors) or not all(
            a.dtype == b.dtype and torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8))
            for a, b in zip(again.values(), tensors.values())):
        failures.append("the tensors differ after to-pth and from-pth")
    tied = model_conf["share_emb"]
    head = state_dict.get(convert_pth.TIED_HEAD)
    if head is None or (tied and head.data_ptr() != state_dict["embed.weight"].data_ptr()):
        failures.append("consolidated.pth lacks output.output.weight, or does not tie it to embed.weight")

    # The reference model on the official state_dict, in float64.
    ours = json.loads(metadata["model_config"])
    cfg = ref.make_config({key: value for key, value in ours.items() if key in ref.CONFIG_DEFAULTS})
    params = {name: t.double() for name, t in state_dict.items() if not (tied and name == convert_pth.TIED_HEAD)}
    with h5py.File(args.batch, "r") as f:
        input_ids = torch.from_numpy(f["input_ids"][()])
    with h5py.File(args.state, "r") as f:
        engine = torch.from_numpy(f["logits"][()]).double()
    with torch.no_grad():
        logits, _ = ref.forward(params, cfg, input_ids)
    error = ((engine - logits).norm() / logits.norm()).item()
    print(f"check_export: {len(tensors)} tensors, tied head {tied}, logits {tuple(logits.shape)}, "
          f"relative error {error:.2e} (tol {args.tol:.0e})")
    if not error <= args.tol:
        failures.append(f"logits differ from the reference: relative error {error:.2e}")
    for failure in failures:
        print("FAIL:", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
