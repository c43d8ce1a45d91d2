"""MaskGIT (Chang et al. 2022): the mask schedule and the iterative parallel sampler.

The sampler is a pure function over a `logits_fn`; it knows nothing of the network. The
schedule is written once and serves both training-time masking (`DynamicsModel.compute_loss`)
and sampling (`sample`).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import torch

Schedule = Literal["cosine", "linear"]


def mask_schedule(progress: torch.Tensor | float, kind: Schedule = "cosine") -> torch.Tensor:
    """Fraction of tokens still masked after `progress` ∈ [0, 1] of decoding.

    Monotone non-increasing, 1 at progress 0 and 0 at progress 1. 'cosine' (MaskGIT's choice)
    fixes few tokens early, when the model knows least, and many late; 'linear' is 1 − progress.
    """
    p = torch.as_tensor(progress, dtype=torch.float64).clamp(0.0, 1.0)
    if kind == "cosine":
        return torch.cos(p * math.pi / 2)
    if kind == "linear":
        return 1.0 - p
    raise ValueError(f"unknown mask schedule {kind!r}; use 'cosine' or 'linear'")


def training_mask_rate(batch: int, min_rate: float, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Per-example mask rates ~ U(min_rate, 1) (Genie §2.1), as points of the linear schedule.

    A rate is where decoding would stand at a uniform progress in [0, 1 − min_rate]; training
    on every stage a sampler passes through is what MaskGIT's training objective asks.
    """
    progress = torch.rand(batch, generator=generator, device=device) * (1.0 - min_rate)
    return mask_schedule(progress, "linear").float()  # (B,)


Generators = torch.Generator | Sequence[torch.Generator] | None


def uniform(shape: tuple[int, ...], generator: Generators, device: torch.device | str,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) numbers of `shape` from `generator`, or from one generator per index of the first
    axis (rollouts of several players stepped together, each on its own random stream: row i
    gets exactly the numbers its generator would give it alone)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"expected one generator per row, {shape[0]}, got {len(generator)}")
    return torch.cat([torch.rand((1, *shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])


def draw_categorical(probs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """One draw per row of `probs` (..., V) (rows sum to 1) → ids (...) int64.

    Inverse-CDF sampling: one uniform number per row, looked up in the running sum of the
    probabilities. `torch.multinomial` draws the same distribution but spends an exponential
    random number on every one of the V entries, which was a tenth of a play step on the CPU.
    """
    cdf = probs.cumsum(dim=-1)  # (..., V)
    u = uniform(probs.shape[:-1] + (1,), generator, probs.device, cdf.dtype)
    # Scaled by the last entry so rounding in the sum can never leave u past the end.
    return torch.searchsorted(cdf, u * cdf[..., -1:]).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def sample(logits_fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, mask_id: int,
           steps: int, temperature: float = 1.0, schedule: Schedule = "cosine",
           choice_noise: float = 0.0, generator: Generators = None) -> torch.Tensor:
    """Fill every `mask_id` position of `tokens` (B, N) int64 in `steps` parallel steps.

    logits_fn: tokens (B, N) → logits (B, N, V); called once per step with the current tokens,
        so every token fixed so far is fed back in.
    temperature: softmax temperature of the draw (0 takes the argmax).
    choice_noise: scale of Gumbel noise added to confidences when choosing which draws to keep
        (annealed to 0 over the steps, as in MaskGIT); 0 ranks by confidence alone.
    Returns tokens (B, N) with no `mask_id` left; positions that were not masked are unchanged.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    tokens = tokens.clone()
    masked = tokens == mask_id  # (B, N)
    n_unknown = masked.sum(dim=1)  # (B,)
    for step in range(steps):
        logits = logits_fn(tokens).float()  # (B, N, V)
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1)
            draw = draw_categorical(probs, generator)
        else:
            probs = torch.softmax(logits, dim=-1)
            draw = probs.argmax(dim=-1)
        confidence = torch.gather(probs, -1, draw[..., None]).squeeze(-1).log()  # (B, N)
        if choice_noise > 0:
            u = uniform(confidence.shape, generator, confidence.device)
            gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0)))
            confidence = confidence + choice_noise * (1.0 - (step + 1) / steps) * gumbel
        # Fixed tokens are never re-masked: they are what later steps condition on, and
        # withdrawing one would let the frame drift away from what was already committed.
        confidence = confidence.masked_fill(~masked, math.inf)
        # How many of the originally unknown tokens stay masked after this step; at least one
        # new token is fixed per step, and none stays masked after the last.
        keep_masked = (mask_schedule((step + 1) / steps, schedule) * n_unknown).floor().long()
        keep_masked = torch.minimum(keep_masked, (masked.sum(dim=1) - 1).clamp(min=0))
        rank = confidence.argsort(dim=1).argsort(dim=1)  # (B, N): 0 = least confident
        still_masked = rank < keep_masked[:, None]
        tokens = torch.where(masked & ~still_masked, draw, tokens)
        masked = still_masked & masked
    return tokens
