"""The optimiser and its learning-rate schedule: AdamW, linear warm-up, then constant or cosine.

Genie App. (CoinRun case study): tokenizer lr 3e-4 after a 10k-step linear warm-up, held
constant; latent action model + dynamics lr 3e-5 → 3e-6 on a cosine after a 5k-step warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

import torch
from torch import nn

Schedule = Literal["constant", "cosine"]


@dataclass
class WarmupSchedule:
    """Multiplier of the peak lr at optimiser step `step` (a LambdaLR `lr_lambda`).

    Linear warm-up from ~0 to 1 over `warmup_steps`, then 1 ('constant') or a cosine from 1
    down to `min_ratio` at `total_steps` ('cosine'), held there after. A dataclass, so
    LambdaLR writes its fields into the checkpoint with the step.
    """

    warmup_steps: int
    total_steps: int
    kind: Schedule = "constant"
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant" or self.total_steps <= self.warmup_steps:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_schedule(lr: float, min_lr: float | None, warmup_steps: int, schedule: str) -> None:
    """Raise a ValueError a user can act on for impossible optimiser settings."""
    if not lr > 0:
        raise ValueError(f"model.lr must be > 0, got {lr}")
    if min_lr is not None and not 0 <= min_lr <= lr:
        raise ValueError(f"model.min_lr must lie in [0, lr={lr}], got {min_lr}")
    if warmup_steps < 0:
        raise ValueError(f"model.warmup_steps must be >= 0, got {warmup_steps}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"model.schedule must be 'constant' or 'cosine', got {schedule!r}")


def param_groups(modules: Iterable[nn.Module], weight_decay: float, exclude: set[int] = frozenset()) -> list[dict]:
    """Trainable parameters split into decayed (weight matrices) and not decayed (biases,
    norms, embedding tables, position tables, codebooks): decaying a codebook or an
    embedding table would pull rarely used rows towards zero."""
    decay, keep, seen = [], [], set(exclude)
    for module in modules:
        for sub in module.modules():
            table = isinstance(sub, (nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.GroupNorm))
            for name, p in sub.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                no_decay = table or p.ndim < 2 or name == "codebook" or name.endswith("pos")
                (keep if no_decay else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_optimizer(modules: Iterable[nn.Module], *, exclude: set[int] = frozenset(), lr: float, betas: tuple[float, float], weight_decay: float,
                    warmup_steps: int, total_steps: int, schedule: Schedule, min_lr: float | None) -> dict:
    """AdamW over the trainable parameters of `modules` (less those whose id is in `exclude`)
    with a per-step warm-up schedule, in Lightning's optimiser-dict form."""
    groups = [g for g in param_groups(modules, weight_decay, exclude) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    fn = WarmupSchedule(warmup_steps, total_steps, schedule, (min_lr if min_lr is not None else lr) / lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
