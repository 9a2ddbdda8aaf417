#!/usr/bin/env python3
"""Converts a training run's metrics.jsonl into a TensorBoard event file.

    tools/metrics_to_tensorboard.py RUN_DIR [LOGDIR]      (LOGDIR defaults to RUN_DIR/tensorboard)
    tensorboard --logdir RUN_DIR/tensorboard

Each metrics line (docs/training.md, "Output") becomes scalars at its step:
  training lines  -> train/<key> for every number but the step (loss, lr, grad_norm, tokens_per_s, step_ms,
                     mfu, device_mem_gib, ...), at wall time start + elapsed_s;
  validation      -> val/<key> without the "val_" prefix (loss, ppl, bpb, tokens);
  long context    -> long_context/nll with the context length as the step (one curve, the last run's).
A last line cut short by a kill is skipped, as the trainer does.

The event file is written by a library's SummaryWriter, tensorboardX or PyTorch's torch.utils.tensorboard
(which needs the tensorboard package), whichever imports: TensorBoard's format is protobuf records, and
a library keeps us from hand-writing that encoding. Without either it says what to install and exits 2.
"""
import json
import os
import sys
import time


def summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter
    except ImportError:
        return None


def scalars(line):
    """(tag, value, step, seconds since the run's start or None) for one metrics object."""
    step = line["step"]
    numbers = {k: v for k, v in line.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "loss" in line:
        elapsed = line.get("elapsed_s")
        return [("train/" + k, v, step, elapsed) for k, v in numbers.items() if k != "elapsed_s"]
    if "val_loss" in line:
        return [("val/" + k.removeprefix("val_"), v, step, None) for k, v in numbers.items()]
    if "long_context" in line:
        return [("long_context/nll", line["long_context_nll"], line["long_context"], None)]
    return []


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: tools/metrics_to_tensorboard.py RUN_DIR [LOGDIR]", file=sys.stderr)
        return 2
    run = argv[1]
    logdir = argv[2] if len(argv) == 3 else os.path.join(run, "tensorboard")
    metrics = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(metrics):
        print(f"metrics_to_tensorboard: no {metrics}", file=sys.stderr)
        return 1
    writer_class = summary_writer_class()
    if writer_class is None:
        print("metrics_to_tensorboard: neither tensorboardX nor torch.utils.tensorboard can be imported: "
              "pip install tensorboardX (or tensorboard next to PyTorch)", file=sys.stderr)
        return 2
    rows = []
    with open(metrics, encoding="utf-8") as f:
        for text in f:
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict) and "step" in line:
                rows += scalars(line)
    # Wall times: the file's last modification is the last logged line's; the run started elapsed_s before.
    last_elapsed = max((r[3] for r in rows if r[3] is not None), default=0.0)
    start = os.path.getmtime(metrics) - last_elapsed
    writer = writer_class(logdir)
    for tag, value, step, elapsed in rows:
        writer.add_scalar(tag, value, global_step=step, walltime=start + elapsed if elapsed is not None else time.time())
    writer.close()
    print(f"metrics_to_tensorboard: wrote {len(rows)} scalars to {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
