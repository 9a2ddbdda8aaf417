#!/usr/bin/env python3
"""tools/metrics_to_tensorboard.py on tests/tools/sample_metrics.jsonl (CTest: tools_metrics_to_tensorboard).

The event file is read back record by record under TFRecord's framing (uint64 length, its masked CRC32C,
the bytes, their masked CRC32C; every checksum verified), each record parsed as an Event with the protobuf
classes of the writer's own package, and the scalars compared with the metrics. Skipped (exit 77) where
neither tensorboardX nor torch.utils.tensorboard imports.

    tests/tools/metrics_to_tensorboard.py path/to/tools/metrics_to_tensorboard.py
"""
import glob
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def crc32c(data):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: the records are small."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    at = 0
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert length_crc == masked(crc32c(header)), f"bad length CRC at byte {at}"
        body = data[at + 12:at + 12 + length]
        (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert body_crc == masked(crc32c(body)), f"bad data CRC at byte {at}"
        yield body
        at += 16 + length


def event_class():
    try:
        from tensorboardX.proto.event_pb2 import Event
    except ImportError:
        from tensorboard.compat.proto.event_pb2 import Event
    return Event


def main(tool):
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            print("skipped: neither tensorboardX nor torch.utils.tensorboard can be imported")
            return 77
    work = tempfile.mkdtemp()
    try:
        os.mkdir(os.path.join(work, "run"))
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_metrics.jsonl"),
                    os.path.join(work, "run", "metrics.jsonl"))
        done = subprocess.run([sys.executable, tool, os.path.join(work, "run")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        files = glob.glob(os.path.join(work, "run", "tensorboard", "events.out.tfevents.*"))
        assert len(files) == 1, files
        Event = event_class()
        got = {}
        for body in records(files[0]):
            event = Event.FromString(body)
            for value in event.summary.value:
                got[(value.tag, event.step)] = value.simple_value
        expected = {("train/loss", 1): 5.5, ("train/lr", 2): 2e-4, ("train/grad_norm", 3): 1.5,
                    ("train/tokens_per_s", 3): 1200.0, ("train/step_ms", 2): 465.5, ("train/mfu", 1): 0.25,
                    ("train/device_peak_gib", 2): 2.0, ("val/loss", 2): 4.25, ("val/loss", 3): 3.75,
                    ("val/bpb", 3): 5.41, ("long_context/nll", 64): 3.25, ("long_context/nll", 128): 3.0}
        for key, value in expected.items():
            assert key in got, f"{key} missing from {sorted(got)}"
            assert abs(got[key] - value) <= 1e-6 * abs(value), f"{key}: {got[key]} != {value}"
        # Training lines 1 and 2 carry 10 numbers besides the step, line 3 four; 2 x 4 validation, 2 long-context.
        assert len(got) == 10 + 10 + 4 + 8 + 2, f"{len(got)} scalars: {sorted(got)}"
        assert "train/elapsed_s" not in {tag for tag, _ in got}
        print(done.stdout.strip())
        print("ok")
        return 0
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
