"""Vector quantisation (van den Oord et al. 2017) with the fixes that keep a codebook alive:
l2-normalised codes and dead-code restart.

Quantizers take channel-last encodings `(..., D)` and return a `Quantized` record. The
lookup-free quantizer in `opengenie.nn.lfq` returns the same record.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    """What a quantizer returns.

    codes: (..., D) the chosen codes, with straight-through gradients to the encodings.
    ids:   (...) int64 code index per position.
    loss:  scalar quantizer loss (already weighted).
    perplexity: scalar, exp(entropy of the code histogram in this batch); equals the number
        of codes in use when they are used evenly.
    usage: scalar in [0, 1], fraction of codes used at least once in this batch.
    """

    codes: torch.Tensor
    ids: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


def code_statistics(ids: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(perplexity, usage) of a batch of code ids."""
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum().clamp(min=1)
    perplexity = torch.exp(-(p * torch.log(p.clamp(min=1e-10))).sum())
    return perplexity, (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """A codebook of `codebook_size` × `code_dim` vectors, nearest-neighbour assignment.

    loss = ||sg[z] - e||² (moves codes) + commitment_weight · ||z - sg[e]||² (keeps the encoder
    near its code). With `l2_codes`, z and e are compared on the unit sphere (cosine
    similarity, as in ViT-VQGAN), which keeps code norms from drifting apart and most codes used.
    With `dead_code_steps` > 0, a code unused for that many training steps is re-seeded from a
    random recent encoding, so a poor initialisation cannot leave part of the codebook dead.
    """

    def __init__(self, codebook_size: int, code_dim: int, *, commitment_weight: float = 0.25,
                 l2_codes: bool = False, dead_code_steps: int = 0) -> None:
        super().__init__()
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.commitment_weight, self.l2_codes = commitment_weight, l2_codes
        self.dead_code_steps = dead_code_steps
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) / code_dim**0.5)
        # Training steps since each code was last chosen (a buffer, so it is checkpointed).
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Codes for ids: (...) int64 → (..., D)."""
        return self._normed(self.codebook)[ids]

    def _normed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.l2_codes else x

    def forward(self, z: torch.Tensor) -> Quantized:
        """z: (..., D) encodings → `Quantized`."""
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"expected encodings (..., {self.code_dim}), got {tuple(z.shape)}")
        # Distances in fp32: under bf16 autocast near-ties between codes would flip arbitrarily.
        flat = self._normed(z.reshape(-1, self.code_dim).float())  # (M, D)
        book = self._normed(self.codebook.float())  # (K, D)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)  # (M, K)
        ids = dist.argmin(dim=1)  # (M,)
        e = book[ids]  # (M, D)
        loss = F.mse_loss(e, flat.detach()) + self.commitment_weight * F.mse_loss(flat, e.detach())
        if self.training and self.dead_code_steps > 0:
            self._restart_dead_codes(ids, flat.detach())
        codes = flat + (e - flat).detach()  # straight-through: forward e, gradient to z
        perplexity, usage = code_statistics(ids, self.codebook_size)
        return Quantized(codes.reshape(z.shape).to(z.dtype), ids.reshape(z.shape[:-1]), loss, perplexity, usage)

    @torch.no_grad()
    def _restart_dead_codes(self, ids: torch.Tensor, flat: torch.Tensor) -> None:
        used = torch.zeros(self.codebook_size, dtype=torch.bool, device=ids.device)
        used[ids] = True
        dist = torch.distributed
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if synced:
            # Data parallel: every rank must keep the same codebook, and DDP syncs gradients,
            # not parameters, so a rank-local restart would split the ranks apart for good.
            # A code counts as used if any rank used it, and rank 0's counters and choices
            # are everyone's (the same collectives run on every rank, dead codes or not).
            used_any = used.to(torch.int32)
            dist.all_reduce(used_any, op=dist.ReduceOp.MAX)
            used = used_any.bool()
        self.idle_steps.add_(1).masked_fill_(used, 0)
        if synced:
            dist.broadcast(self.idle_steps, src=0)
        dead = (self.idle_steps >= self.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return
        # Re-seed from encodings of this batch (the most recent ones the encoder produced),
        # with a little noise so two revived codes drawn from one encoding can separate.
        pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
        seeds = flat[pick] + 1e-3 * torch.randn_like(flat[pick])
        if synced:
            dist.broadcast(seeds, src=0)  # the same revived codes on every rank
        self.codebook.data[dead] = seeds.to(self.codebook.dtype)
        self.idle_steps[dead] = 0
