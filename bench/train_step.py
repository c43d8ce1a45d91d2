"""Training-step throughput: tokens/s and MFU of each stage of each preset, fp32 and bf16.

    python bench/train_step.py [--presets tiny coinrun] [--steps 2] [--json out.json]

MFU = model FLOPs per second / the machine's peak, where the peak is *measured* here as the
best rate of 2048² matmuls (bf16 and fp32) and model FLOPs are counted by torch's
FlopCounterMode (forward + backward of the trained networks, forward of the frozen tokenizer).
A step is what the Lightning loop runs: loss, backward, gradient clipping, AdamW. Stage 2 is
timed with cached tokens (`data.tokens: true`). Inputs are random clips of 64×64 frames.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from opengenie.training import DynamicsModule, TokenizerModule
from opengenie.training.schedule import build_optimizer
from opengenie.training.throughput import measure_peak_flops, step_flops_per_clip

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _module(stage: str, preset: str, tmp: Path):
    torch.manual_seed(0)
    tokenizer = TokenizerModule(preset=preset)
    if stage == "tokenizer":
        return tokenizer
    path = tmp / f"{preset}-tokenizer.ckpt"  # stage 2 needs a tokenizer checkpoint: an untrained one will do
    torch.save({"state_dict": tokenizer.state_dict(), "hyper_parameters": dict(tokenizer.hparams)}, path)
    return DynamicsModule(str(path), preset=preset)


def make_step(module, batch: dict, autocast=None):
    """A function running one training step of `module` on `batch` (loss, backward, clipping,
    AdamW) → its seconds."""
    opt = build_optimizer(module.trained_modules(), lr=1e-4, betas=(0.9, 0.9), weight_decay=1e-4, warmup_steps=0,
                          total_steps=1, schedule="constant", min_lr=None)["optimizer"]
    params = [p for group in opt.param_groups for p in group["params"]]

    def step() -> float:
        t = time.perf_counter()
        with autocast or nullcontext():
            loss = module.compute_loss(batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t
    return step


def bench(stage: str, preset: str, precision: str, batch_size: int, steps: int, peak: dict, tmp: Path) -> dict:
    module = _module(stage, preset, tmp).train()
    frames = module.hparams.genie_config["tokenizer"]["max_frames"]
    g = torch.Generator().manual_seed(0)
    batch = {"video": torch.rand(batch_size, 3, frames, 64, 64, generator=g) * 2 - 1}
    if stage == "dynamics":
        batch["tokens"] = module.tokenize(batch["video"])
    step = make_step(module, batch, torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else None)
    params = [p for m in module.trained_modules() for p in m.parameters() if p.requires_grad]
    step()  # warm-up: allocator, thread pool, lazy inits
    seconds = statistics.median(step() for _ in range(steps))
    flops = step_flops_per_clip(module, batch) * batch_size
    tokens = module.tokens_per_clip(batch) * batch_size
    return {"stage": stage, "preset": preset, "precision": precision, "batch": batch_size, "frames": frames,
            "step_s": seconds, "tokens_per_s": tokens / seconds, "tflops_per_s": flops / seconds / 1e12,
            "mfu": flops / seconds / peak[precision],
            "params_m": sum(p.numel() for p in params) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "coinrun"])
    ap.add_argument("--stages", nargs="+", default=["tokenizer", "dynamics"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--batch", nargs="+", default=["tiny=8", "coinrun=1"], help="clips per step, per preset")
    ap.add_argument("--steps", type=int, default=2, help="timed steps (the median is reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = {k: int(v) for k, v in (b.split("=") for b in args.batch)}

    peak = {p: measure_peak_flops("cpu", DTYPES[p], 2048, seconds=2.0) for p in args.precisions}
    print(f"measured peak (2048² matmul, {torch.get_num_threads()} threads): "
          + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peak.items()), file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for stage in args.stages:
                for precision in args.precisions:
                    rows.append(bench(stage, preset, precision, batch.get(preset, 1), args.steps, peak, Path(tmp)))
                    print(f"  done {preset} {stage} {precision}: {rows[-1]['step_s']:.2f} s/step", file=sys.stderr)

    head = f"{'preset':8s} {'stage':9s} {'prec':5s} {'batch':>5s} {'params':>7s} {'s/step':>7s} " \
           f"{'tokens/s':>9s} {'TFLOP/s':>8s} {'MFU':>6s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['preset']:8s} {r['stage']:9s} {r['precision']:5s} {r['batch']:5d} {r['params_m']:6.1f}M "
              f"{r['step_s']:7.2f} {r['tokens_per_s']:9.0f} {r['tflops_per_s']:8.3f} {r['mfu']:6.1%}")
    result = {"peak_flops": peak, "threads": torch.get_num_threads(), "rows": rows}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
