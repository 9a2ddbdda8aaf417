#!/usr/bin/env python3
"""Converts between an export directory of build/bin/convert and the official repository's checkpoint layout.

An export directory (docs/interop.md) holds model.safetensors (the official parameter names), config.json (the
official ModelConf) and, for a SentencePiece tokenizer, tokenizer.model. The official layout
(XuezheMax/megalodon megalodon/reloading.py) is a directory holding consolidated.pth (torch.save of the
state_dict), config.json ({"model": ModelConf, "tokenizer": TokenizerConf, ...}) and consolidate_config.json
({"model_parallel_size": 1, "dtype": ...}); reload_model() reads it.

Usage (PyTorch must be installed; the safetensors files are read and written here, no other package needed):
  python3 tools/convert_pth.py to-pth EXPORT_DIR OFFICIAL_DIR [--dtype bf16]
  python3 tools/convert_pth.py from-pth OFFICIAL_DIR EXPORT_DIR

Tensors keep their dtype and bits both ways unless --dtype asks for another. A tied head (share_emb) is one
tensor here, embed.weight; the official state_dict also lists it as output.output.weight, which to-pth adds
and from-pth drops (after checking it equals embed.weight). float16 tensors become float32 (megalodon.cpp
reads F32, BF16, F64, I32, I64). Checkpoints split over model-parallel ranks (consolidated.NN.pth) are refused.
"""

import argparse
import json
import os
import shutil
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}
TIED_HEAD = "output.output.weight"


def read_safetensors(path):
    """(ordered dict name -> tensor, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", {})
    names = {v: k for k, v in DTYPES.items()}
    tensors = {}
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        begin, end = entry["data_offsets"]
        raw = bytearray(data[8 + length + begin:8 + length + end])
        flat = torch.frombuffer(raw, dtype=names[entry["dtype"]]) if raw else torch.empty(0, dtype=names[entry["dtype"]])
        tensors[name] = flat.reshape(entry["shape"]).clone()
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    """Writes as build/bin/convert does: compact header in the given order, padded with spaces to 8 bytes."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    for name, tensor in tensors.items():
        tensor = tensor.detach().contiguous().cpu()
        blob = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(path + ".tmp", path)


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def to_pth(export_dir, official_dir, dtype):
    tensors, _ = read_safetensors(os.path.join(export_dir, "model.safetensors"))
    with open(os.path.join(export_dir, "config.json")) as f:
        model_conf = json.load(f)
    target = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(dtype)
    state_dict = {name: (t.to(target) if target and t.is_floating_point() else t) for name, t in tensors.items()}
    if model_conf.get("share_emb"):
        state_dict[TIED_HEAD] = state_dict["embed.weight"]
    os.makedirs(official_dir, exist_ok=True)
    torch.save(state_dict, os.path.join(official_dir, "consolidated.pth.tmp"))
    os.replace(os.path.join(official_dir, "consolidated.pth.tmp"), os.path.join(official_dir, "consolidated.pth"))
    tokenizer = os.path.join(export_dir, "tokenizer.model")
    tokenizer_conf = {"path": None, "additional_vocab_size": 0, "data_tokenized": False}
    if os.path.exists(tokenizer):
        shutil.copyfile(tokenizer, os.path.join(official_dir, "tokenizer.model"))
        tokenizer_conf["path"] = os.path.abspath(os.path.join(official_dir, "tokenizer.model"))
    write_json(os.path.join(official_dir, "config.json"), {"model": model_conf, "tokenizer": tokenizer_conf})
    stored = {t.dtype for t in state_dict.values() if t.is_floating_point()}
    write_json(os.path.join(official_dir, "consolidate_config.json"),
               {"model_parallel_size": 1, "dtype": "bf16" if stored == {torch.bfloat16} else "fp32"})
    print(f"convert_pth: {len(tensors)} tensors -> {official_dir}/consolidated.pth")


def from_pth(official_dir, export_dir):
    consolidate = os.path.join(official_dir, "consolidate_config.json")
    if os.path.exists(consolidate):
        with open(consolidate) as f:
            parallel = json.load(f).get("model_parallel_size", 1)
        if parallel != 1:
            sys.exit(f"convert_pth: {official_dir} is split over {parallel} model-parallel ranks; only "
                     "model_parallel_size 1 (consolidated.pth) is read")
    with open(os.path.join(official_dir, "config.json")) as f:
        config = json.load(f)
    model_conf = config["model"] if "model" in config else config
    state_dict = torch.load(os.path.join(official_dir, "consolidated.pth"), map_location="cpu", weights_only=True)
    tensors = {}
    for name, tensor in state_dict.items():
        if tensor.dtype == torch.float16:
            tensor = tensor.float()
        if tensor.dtype not in DTYPES:
            sys.exit(f"convert_pth: tensor {name} has dtype {tensor.dtype}, which megalodon.cpp does not read")
        tensors[name] = tensor
    if model_conf.get("share_emb") and TIED_HEAD in tensors:
        if not torch.equal(tensors[TIED_HEAD], tensors["embed.weight"]):
            sys.exit(f"convert_pth: share_emb is set but {TIED_HEAD} differs from embed.weight")
        del tensors[TIED_HEAD]
    os.makedirs(export_dir, exist_ok=True)
    write_safetensors(os.path.join(export_dir, "model.safetensors"), tensors, {"format": "pt"})
    write_json(os.path.join(export_dir, "config.json"), model_conf)
    tokenizer = (config.get("tokenizer") or {}).get("path")
    if tokenizer and os.path.exists(tokenizer):
        shutil.copyfile(tokenizer, os.path.join(export_dir, "tokenizer.model"))
    print(f"convert_pth: {len(tensors)} tensors -> {export_dir}/model.safetensors")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    to = commands.add_parser("to-pth", help="export directory -> official consolidated.pth layout")
    to.add_argument("export_dir")
    to.add_argument("official_dir")
    to.add_argument("--dtype", choices=["keep", "bf16", "fp32"], default="keep", help="floating tensors' dtype")
    back = commands.add_parser("from-pth", help="official consolidated.pth layout -> export directory")
    back.add_argument("official_dir")
    back.add_argument("export_dir")
    args = parser.parse_args()
    if args.command == "to-pth":
        to_pth(args.export_dir, args.official_dir, args.dtype)
    else:
        from_pth(args.official_dir, args.export_dir)


if __name__ == "__main__":
    main()
