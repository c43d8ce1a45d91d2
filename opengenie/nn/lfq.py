"""Lookup-free quantization (LFQ, MagViT-2: Yu et al. 2023, §3.1).

Each code channel is quantized on its own to -1 or +1, so a `code_dim`-channel encoding picks
one of 2^code_dim codes without a codebook lookup. The channels may be split into
`n_codebook` groups of `code_dim / n_codebook` bits, each group an independent codebook of
2^(code_dim / n_codebook) codes with its own integer id.

Entropy terms, in the per-bit (Bernoulli) form. The soft assignment of an encoding z to the
codes c ∈ {-1, 1}^d, q(c | z) ∝ exp(-||z - c||² / τ), factorises over bits:
q(c_j = +1 | z) = sigmoid(4 z_j / τ). So
  - the per-sample entropy H[q(c | z)] = Σ_j H(sigmoid(4 z_j / τ)) is exact, and
  - the codebook entropy H[E_z q(c | z)] is replaced by Σ_j H(E_z sigmoid(4 z_j / τ)), the
    entropy of the product of the per-bit marginals. It is an upper bound on the exact term
    and is maximal exactly when every bit is used half the time.
Both cost O(positions · code_dim) instead of O(positions · 2^code_dim): for the seed's 18-bit
codebook the exact batch entropy would need 262,144 probabilities per position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from opengenie.nn.quantize import Quantized, code_statistics


class _SignStraightThrough(torch.autograd.Function):
    """Forward: +1 where x > 0 else -1 (exactly); backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd signature
        return torch.where(x > 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return grad


def _bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of Bernoulli(p), elementwise; 0 at p ∈ {0, 1}."""
    return -(p * torch.log(p.clamp(min=1e-8)) + (1 - p) * torch.log((1 - p).clamp(min=1e-8)))


class LookupFreeQuantizer(nn.Module):
    """LFQ: `codes = sign(z + bias)` in {-1, +1} with straight-through gradients.

    loss = commitment_weight · ||(z + bias) - sg[codes]||²
           + entropy_weight · mean per-sample entropy     (be confident about each code)
           - diversity_weight · codebook entropy           (use every code across the batch)
           + diversity_weight · code_dim · ln 2            (a constant: the loss is >= 0)
    with both entropies in nats, summed over all code_dim bits (see the module docstring),
    estimated in training on a random `frac_sample` fraction of the positions (in eval mode on
    all of them).

    ids: the bits of each codebook read as a binary number, most significant bit first
    (bit = 1 for code +1). Shape (...) when n_codebook == 1, (..., n_codebook) otherwise.
    """

    def __init__(self, code_dim: int, n_codebook: int = 1, bias: bool = True, frac_sample: float = 1.0,
                 commitment_weight: float = 0.25, entropy_weight: float = 0.1,
                 diversity_weight: float = 1.0, *, temperature: float = 1.0) -> None:
        super().__init__()
        if code_dim % n_codebook:
            raise ValueError(f"code_dim={code_dim} must be divisible by n_codebook={n_codebook}")
        bits = code_dim // n_codebook
        if bits > 62:
            raise ValueError(f"at most 62 bits per codebook fit an int64 id, got {bits}; raise n_codebook")
        if not 0.0 < frac_sample <= 1.0:
            raise ValueError(f"frac_sample must lie in (0, 1], got {frac_sample}")
        self.code_dim, self.n_codebook, self.bits = code_dim, n_codebook, bits
        self.codebook_size = 2**bits
        """Codes per codebook: the range of one id."""
        self.frac_sample, self.temperature = frac_sample, temperature
        self.commitment_weight, self.entropy_weight = commitment_weight, entropy_weight
        self.diversity_weight = diversity_weight
        # A learnable offset lets the encoder move each bit's decision threshold away from 0.
        self.bias = nn.Parameter(torch.zeros(code_dim)) if bias else None
        self.register_buffer("powers", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)  # MSB first

    def _check(self, z: torch.Tensor) -> None:
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"expected encodings (..., {self.code_dim}), got {tuple(z.shape)}")

    def forward(self, z: torch.Tensor) -> Quantized:
        """z: (..., code_dim) encodings → `Quantized` (codes (..., code_dim) in {-1, +1})."""
        self._check(z)
        if self.bias is not None:
            z = z + self.bias
        codes = _SignStraightThrough.apply(z)  # (..., code_dim), exactly ±1
        ids = self.codes_to_ids(codes.detach())
        # Losses in fp32: under bf16 autocast sigmoid/log of small differences lose the entropy.
        zf = z.float()
        commitment = F.mse_loss(zf, codes.detach().float())
        per_sample, codebook = self.entropies(zf)
        # The diversity term is offset by its maximum (a constant: same gradient as -codebook),
        # so the loss is >= 0 and reads as "how far from confident, evenly used codes".
        loss = (self.commitment_weight * commitment + self.entropy_weight * per_sample
                + self.diversity_weight * (self.max_entropy - codebook))
        # Statistics per codebook, averaged: ids of different codebooks mean different codes.
        stats = [self._statistics(i) for i in ids.reshape(-1, self.n_codebook).unbind(1)]
        perplexity = torch.stack([s[0] for s in stats]).mean()
        usage = torch.stack([s[1] for s in stats]).mean()
        return Quantized(codes, ids, loss, perplexity, usage)

    def _statistics(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(perplexity, usage) of one codebook's ids (M,)."""
        if self.bits <= 24:
            return code_statistics(ids, self.codebook_size)
        # A histogram over more than 2^24 codes would not fit in memory; count the used ones.
        counts = torch.unique(ids, return_counts=True)[1].float()
        p = counts / counts.sum()
        return torch.exp(-(p * p.log()).sum()), counts.new_tensor(counts.numel() / self.codebook_size)

    def entropies(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-sample entropy, codebook entropy) in nats of biased encodings z (..., code_dim)."""
        flat = z.reshape(-1, self.code_dim)  # (M, code_dim)
        # The sample is drawn from torch's global generator, which a training step runs on a
        # checkpointed state of (training/loop.py): a resumed run samples the same positions.
        if self.training and self.frac_sample < 1.0:  # evaluation uses every position: deterministic
            keep = max(1, int(round(self.frac_sample * flat.shape[0])))
            flat = flat[torch.randperm(flat.shape[0], device=flat.device)[:keep]]  # (M', code_dim)
        p_plus = torch.sigmoid(4.0 * flat / self.temperature)  # (M', code_dim) q(bit = +1 | z)
        per_sample = _bernoulli_entropy(p_plus).sum(-1).mean()
        codebook = _bernoulli_entropy(p_plus.mean(0)).sum()
        return per_sample, codebook

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., code_dim) ±1 codes → int64 ids, (...) or (..., n_codebook)."""
        self._check(codes)
        bits = (codes > 0).long().reshape(*codes.shape[:-1], self.n_codebook, self.bits)  # (..., n, bits)
        ids = (bits * self.powers).sum(-1)  # (..., n_codebook)
        return ids.squeeze(-1) if self.n_codebook == 1 else ids

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """int64 ids (...) or (..., n_codebook) → codes (..., code_dim) float in {-1, +1}."""
        if self.n_codebook == 1:
            ids = ids.unsqueeze(-1)  # (..., 1)
        elif ids.shape[-1] != self.n_codebook:
            raise ValueError(f"expected ids (..., {self.n_codebook}), got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise ValueError(f"ids must lie in [0, {self.codebook_size}), got [{ids.min()}, {ids.max()}]")
        bits = (ids.unsqueeze(-1) // self.powers) % 2  # (..., n_codebook, bits)
        return (bits.float() * 2 - 1).flatten(-2)  # (..., code_dim)

    @property
    def max_entropy(self) -> float:
        """The largest possible codebook entropy in nats: code_dim · ln 2."""
        return self.code_dim * math.log(2.0)
