#!/usr/bin/env python3
"""The PyTorch baseline of bench_train (docs/perf.md, "Training step"): a plain Llama of a similar size,
trained the way a PyTorch user would, timed the way bench_train times our step, printing the same table
and writing the same JSON keys, so that a script divides one run by the other.

    python3 tools/bench_reference.py --config 125M --batch 8 --seq-len 4096 [--warmup 3] [--steps 10]
                                     [--dtype bf16|f32] [--device auto|cpu|cuda] [--peak-tflops P] [--json FILE]

The model: token embedding, N blocks of (RMSNorm, causal self-attention with RoPE through
F.scaled_dot_product_attention, which picks the flash kernel on a GPU; RMSNorm, SwiGLU FFN), each with a
residual, a final RMSNorm and an untied LM head; no biases. Eager PyTorch: f32 master weights, the
forward under torch.autocast to bf16 (the matrix products run in bf16 on a bf16 copy of the weights),
the loss in f32, fused AdamW (betas 0.9/0.98, weight decay 0.1) and global-norm clipping to 1.0, as our
mega200M config trains. The configs:

    125M: D 768, 12 layers, 12 heads, FFN 2048 (8/3 D), vocab 32000      (~134M parameters)
    350M: D 1024, 24 layers, 16 heads, FFN 2816 (8/3 D, rounded up to 256)  (~374M parameters)
    tiny: D 64, 2 layers, 2 heads, FFN 192, vocab 256 (a quick check on the CPU)

One step is forward (the batch copied to the device, the logits and the loss), backward, and optimizer
(clipping, AdamW, zeroing the gradients); a step begins with the host in step with the device, as our
step's loss read does. Each phase is timed between torch.cuda.Event marks (time.perf_counter on the CPU);
after --warmup untimed steps, --steps timed ones give the median. Model FLOPs per token count as
nn/flops.h does: 6 x the weights of every matrix a token meets (4 D^2 + 3 D F per block, the head
vocab x D) plus causal attention's 3 x 2 x c_eff x 2D per block, c_eff = (seq_len + 1) / 2 keys per query.
MFU divides by --peak-tflops (790, the H200's measured dense bf16 rate, for bf16 on CUDA; none otherwise).
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

CONFIGS = {
    "125M": dict(dim=768, layers=12, heads=12, ffn=2048, vocab=32000),
    "350M": dict(dim=1024, layers=24, heads=16, ffn=2816, vocab=32000),
    "tiny": dict(dim=64, layers=2, heads=2, ffn=192, vocab=256),
}
PHASES = ("forward", "backward", "optimizer")
H200_BF16_PEAK_TFLOPS = 790.0  # as bench_train's default (apps/lib/training_step.h)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(seq_len, head_dim, base=10000.0):
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()  # [seq_len, head_dim / 2]


def apply_rope(x, cos, sin):  # x: [B, heads, L, head_dim]; rotate-half form
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class Block(nn.Module):
    def __init__(self, dim, heads, ffn):
        super().__init__()
        self.heads = heads
        self.attn_norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.ffn_norm = RMSNorm(dim)
        self.w1 = nn.Linear(dim, ffn, bias=False)
        self.w3 = nn.Linear(dim, ffn, bias=False)
        self.w2 = nn.Linear(ffn, dim, bias=False)

    def forward(self, x, cos, sin):
        b, length, dim = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(b, length, dim))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, dim, layers, heads, ffn, vocab, seq_len):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, ffn) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        cos, sin = rope_tables(seq_len, dim // heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.norm(x))


def flops_per_token(c, seq_len):
    dense = 6 * (c["layers"] * (4 * c["dim"] ** 2 + 3 * c["dim"] * c["ffn"]) + c["vocab"] * c["dim"])
    attention = c["layers"] * 3 * 2 * (seq_len + 1) / 2 * 2 * c["dim"]
    return dense + attention


class Mark:
    """A point in the device's work: a CUDA event on the current stream, or the host clock on the CPU."""

    def __init__(self, device):
        if device.type == "cuda":
            self.event = torch.cuda.Event(enable_timing=True)
            self.event.record()
        else:
            self.event, self.time = None, time.perf_counter()

    def ms_since(self, start):
        if self.event is None:
            return 1e3 * (self.time - start.time)
        self.event.synchronize()
        return start.event.elapsed_time(self.event)


def with_commas(value):
    return "{:,}".format(int(round(value)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="125M")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--dtype", choices=("bf16", "f32"), default="bf16", help="compute dtype (autocast)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for MFU (default 790 for bf16 on CUDA)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    a = parser.parse_args()
    if min(a.batch, a.seq_len, a.steps) < 1 or a.warmup < 0:
        parser.error("--batch, --seq-len and --steps must be >= 1, --warmup >= 0")
    if a.peak_tflops is not None and a.peak_tflops <= 0:
        parser.error("--peak-tflops must be > 0")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    if device.type == "cuda":
        # set_device needs an index: "cuda" alone means the current device.
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(device)

    c = CONFIGS[a.config]
    torch.manual_seed(a.seed)
    model = Llama(**c, seq_len=a.seq_len).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1,
                                  fused=device.type == "cuda")
    # Four steps' worth of random tokens on the host, each batch copied to the device in its step.
    batches = [torch.randint(0, c["vocab"], (a.batch, a.seq_len + 1)) for _ in range(4)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16")

    def step(index, mark=lambda phase: None):
        mark("forward")
        tokens = batches[index % len(batches)].to(device)
        with autocast:
            logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, c["vocab"]), tokens[:, 1:].reshape(-1))
        mark("backward")
        loss.backward()
        mark("optimizer")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mark("done")
        return loss.item()  # the host waits here, so the next step starts in step with the device

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(a.warmup):
        step(i)
    totals, phases = [], {p: [] for p in PHASES}
    for i in range(a.steps):
        marks = []
        loss = step(a.warmup + i, lambda phase: marks.append((phase, Mark(device))))
        if not math.isfinite(loss):
            sys.exit("bench_reference: the loss is %s at step %d" % (loss, a.warmup + i + 1))
        totals.append(marks[-1][1].ms_since(marks[0][1]))
        spent = {p: 0.0 for p in PHASES}
        for (phase, start), (_, end) in zip(marks, marks[1:]):
            spent[phase] += end.ms_since(start)
        for p in PHASES:
            phases[p].append(spent[p])
    peak_gib = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None

    step_ms = statistics.median(totals)
    tokens_per_step = a.batch * a.seq_len
    tokens_per_s = tokens_per_step / (step_ms * 1e-3)
    flops = flops_per_token(c, a.seq_len)
    peak = a.peak_tflops
    if peak is None and device.type == "cuda" and a.dtype == "bf16":
        peak = H200_BF16_PEAK_TFLOPS
    mfu = flops * tokens_per_s / (peak * 1e12) if peak else None
    phase_ms = {p: statistics.median(phases[p]) for p in PHASES}

    print("bench_reference: llama %s, %.1fM parameters, %s on %s; %d x %d = %s tokens per step; median of %d steps "
          "after %d warm-up" % (a.config, parameters * 1e-6, a.dtype, device, a.batch, a.seq_len,
                                with_commas(tokens_per_step), a.steps, a.warmup))
    print("| tokens/s | step ms (median / min / max) | GFLOP/token | MFU (of TFLOP/s) | peak GiB | forward ms | "
          "backward ms | optimizer ms |\n|---|---|---|---|---|---|---|---|")
    print("| %s | %.2f / %.2f / %.2f | %.3f | %s | %s | %.2f | %.2f | %.2f |" % (
        with_commas(tokens_per_s), step_ms, min(totals), max(totals), flops * 1e-9,
        "%.1f%% of %g" % (100 * mfu, peak) if mfu is not None else "—",
        "%.2f" % peak_gib if peak_gib is not None else "—",
        phase_ms["forward"], phase_ms["backward"], phase_ms["optimizer"]))
    if a.json:
        record = {
            "implementation": "pytorch-llama",
            "config": a.config,
            "device": str(device),
            "dtype": a.dtype,
            "batch": a.batch,
            "seq_len": a.seq_len,
            "grad_accum": 1,
            "tokens_per_step": tokens_per_step,
            "warmup": a.warmup,
            "steps": a.steps,
            "parameters": parameters,
            "tokens_per_s": tokens_per_s,
            "step_ms": {"median": step_ms, "min": min(totals), "max": max(totals)},
            "phase_ms": phase_ms,
            "flops_per_token": flops,
            "peak_tflops": peak,
            "mfu": mfu,
            "peak_memory_gib": peak_gib,
            "torch": torch.__version__,
        }
        with open(a.json, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
