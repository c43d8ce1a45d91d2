"""Train a tiny world on real CoinRun for a few minutes, then evaluate it with `opengenie eval`.

    python bench/eval_tiny.py                                  # ~12 min of training + eval
    python bench/eval_tiny.py --tokenizer-minutes 1 --dynamics-minutes 1 --num-clips 8

Genie's training order (§2.1): the tokenizer first; then the latent action model and the
dynamics together, the dynamics reading the frozen tokenizer's ids and the action model's
actions (stop-gradient). Plain PyTorch loops on the CPU, in fp32 by default: for this tiny
model bf16 autocast measured slower (1.38 vs 0.93 s per tokenizer step of 16x8 frames, one
thread, busy 2-core machine); `--precision bf16` turns it on. The world is saved
to `<out>/world`, the evaluation to `<out>/eval`, and the metric table is printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from opengenie import Genie, presets
from opengenie.data import EpisodeClipDataset, generate_coinrun
from opengenie.evaluation.report import run_eval


def clips(root: Path, frames: int, batch_size: int, seed: int):
    """Endless shuffled training batches: video (B, 3, frames, 64, 64) in [-1, 1]."""
    ds = EpisodeClipDataset(root, seq_len=frames, split="train", seed=seed, with_actions=False)
    for epoch in itertools.count():
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(seed + epoch))
        for batch in loader:
            yield batch["video"]


def train(name: str, params, loss_fn, batches, minutes: float, lr: float, bf16: bool, warmup: int = 100) -> int:
    """AdamW with linear warm-up for `minutes` of wall time; returns the steps taken."""
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=1e-4)
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < minutes * 60:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, logs = loss_fn(next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            shown = " ".join(f"{k}={float(v.detach()):.4f}" for k, v in logs.items())
            print(f"{name} step {step} ({time.perf_counter() - start:.0f} s) {shown}", flush=True)
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="out/bench/coinrun", help="CoinRun episode folder (made if missing)")
    p.add_argument("--levels", type=int, default=300, help="levels to generate when --data is missing")
    p.add_argument("--steps-per-level", type=int, default=200)
    p.add_argument("--out", default="out/bench/eval_tiny")
    p.add_argument("--tokenizer-minutes", type=float, default=5.0)
    p.add_argument("--dynamics-minutes", type=float, default=7.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="training precision on the CPU")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data, out = Path(args.data), Path(args.out)
    if not (data / "manifest.json").is_file():
        generate_coinrun(data, args.levels, args.steps_per_level)

    world = Genie(presets.tiny()).train()
    frames = world.config.dynamics.max_frames  # train on clips of the models' training length
    batches = clips(data, frames, args.batch_size, args.seed)

    def tokenizer_loss(video):
        loss, parts = world.tokenizer(video)
        return loss, {"recon": parts.recon, "usage": parts.usage}

    tok_steps = train("tokenizer", list(world.tokenizer.parameters()), tokenizer_loss, batches,
                      args.tokenizer_minutes, args.lr, args.precision == "bf16")
    world.tokenizer.eval().requires_grad_(False)

    def joint_loss(video):
        out = world.action_model(video)
        with torch.no_grad():  # Genie §2.1: the dynamics sees actions with stop-gradient
            ids = world.tokenizer.tokenize(video)[1]
            actions = world.action_model.infer_actions(video)
        dyn = world.dynamics.compute_loss(ids, actions)
        return out.loss + dyn.loss, {"action_recon": out.parts.recon, "dyn_ce": dyn.loss, "dyn_acc": dyn.accuracy}

    params = list(world.action_model.parameters()) + list(world.dynamics.parameters())
    dyn_steps = train("action+dynamics", params, joint_loss, batches, args.dynamics_minutes, args.lr,
                      args.precision == "bf16")
    world.eval().save_pretrained(out / "world")

    metrics = run_eval(out / "world", data, split="test", num_clips=args.num_clips, frames=16,
                       seed=args.seed, batch_size=8, out=out / "eval", device="cpu")
    print(f"\ntrained: tokenizer {tok_steps} steps ({args.tokenizer_minutes} min), action model + dynamics "
          f"{dyn_steps} steps ({args.dynamics_minutes} min), batch {args.batch_size}x{frames} frames, "
          f"{args.precision}\n")
    print((out / "eval" / "report.md").read_text().split("\n## Frames against")[0])
    (out / "train.json").write_text(json.dumps({"tokenizer_steps": tok_steps, "dynamics_steps": dyn_steps,
                                                **vars(args)}, indent=2))


if __name__ == "__main__":
    main()
