"""Vector quantisation (van den Oord et al. 2017) with the fixes that keep a codebook alive:
l2-normalised codes, dead-code restart, and a continuous warm-up that ends in a k-means
initialisation of the codebook.

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

    With `warmup_steps` > 0, the first that many training steps pass the (normalised) encodings
    through unquantised, with Gaussian noise of scale `warmup_noise`, and the quantizer loss is
    zero; the step after, the codebook is set by k-means over the last `warmup_memory` encodings
    and quantisation starts. A codebook learnt jointly with its encoder from random codes
    settles early into k-means' local optima — one code for two kinds of input, two codes for
    one — and the straight-through gradient does not lift it out; an encoder trained first
    through a noisy continuous bottleneck has already sorted its inputs when the codes are
    placed. In eval mode during the warm-up the ids come from the not yet initialised codebook.
    Steps are training forward passes (micro-batches under gradient accumulation). The step count
    is in the state dict; the remembered encodings and the count of restarted codes are not (they
    mean nothing to a trained model), but `training_state` returns them for a training checkpoint,
    so that a run resumed during the warm-up places the same codes as the uninterrupted one.

    Random draws (warm-up noise, k-means seeding, restarts) come from torch's global generator:
    the training loop runs every step on a generator state saved in its checkpoints.
    """

    def __init__(self, codebook_size: int, code_dim: int, *, commitment_weight: float = 0.25,
                 l2_codes: bool = False, dead_code_steps: int = 0, warmup_steps: int = 0,
                 warmup_noise: float = 0.1, warmup_memory: int = 1024) -> None:
        super().__init__()
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.commitment_weight, self.l2_codes = commitment_weight, l2_codes
        self.dead_code_steps = dead_code_steps
        self.warmup_steps, self.warmup_noise = warmup_steps, warmup_noise
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) / code_dim**0.5)
        # Training steps since each code was last chosen (a buffer, so it is checkpointed).
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long))
        if warmup_steps > 0:
            # Training steps taken (checkpointed, so a resumed or fine-tuned model does not warm
            # up again) and the latest encodings, for k-means (not checkpointed).
            self.register_buffer("steps_taken", torch.zeros((), dtype=torch.long))
            self.register_buffer("memory", torch.zeros(warmup_memory, code_dim), persistent=False)
            self.register_buffer("memory_size", torch.zeros((), dtype=torch.long), persistent=False)
        self._warm: bool | None = None
        self.restarted_codes = 0  # codes re-seeded by dead-code restart so far (see training_state)

    def training_state(self) -> dict[str, torch.Tensor]:
        """What a resumed training run needs beyond the state dict (tensors only)."""
        state = {"restarted_codes": torch.tensor(self.restarted_codes)}
        if self.warmup_steps > 0:
            state.update(memory=self.memory.detach().cpu().clone(), memory_size=self.memory_size.detach().cpu().clone())
        return state

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        self.restarted_codes = int(state["restarted_codes"])
        if self.warmup_steps > 0 and "memory" in state and state["memory"].shape == self.memory.shape:
            self.memory.copy_(state["memory"])
            self.memory_size.copy_(state["memory_size"])

    def straight_through_onehot(self, codes: torch.Tensor, ids: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
        """One-hots of `ids` (...,) whose gradient is that of a softmax over the similarity of
        `codes` (..., D) (the quantised, straight-through encodings) to every code: forward exactly
        the chosen code, backward a signal to the encoder (and codebook) of which code should win."""
        book = self._normed(self.codebook.float())  # (K, D)
        x = codes.float()
        # cosine similarity for l2 codes, else minus the squared distance (the nearest code wins)
        sim = x @ book.T if self.l2_codes else 2 * x @ book.T - (book ** 2).sum(-1) - (x ** 2).sum(-1, keepdim=True)
        soft = torch.softmax(sim / temperature, dim=-1)
        hard = F.one_hot(ids, self.codebook_size).to(soft.dtype)
        return hard + (soft - soft.detach())  # exactly `hard` forward: the bracket is 0

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
        if self.training and self._warming():
            self.steps_taken += 1
            if int(self.steps_taken) <= self.warmup_steps:
                return self._warmup(z, flat)
            self._init_codebook(flat.detach())
            self._warm = False
        book = self._normed(self.codebook.float())  # (K, D)
        ids = _nearest(flat, book)  # (M,)
        e = book[ids]  # (M, D)
        loss = F.mse_loss(e, flat.detach()) + self.commitment_weight * F.mse_loss(flat, e.detach())
        if self.training and self.dead_code_steps > 0:
            self._restart_dead_codes(ids, flat.detach())
        codes = flat + (e - flat).detach()  # straight-through: forward e, gradient to z
        perplexity, usage = code_statistics(ids, self.codebook_size)
        return Quantized(codes.reshape(z.shape).to(z.dtype), ids.reshape(z.shape[:-1]), loss, perplexity, usage)

    def _warming(self) -> bool:
        """Whether the codes are still to be placed, read from the step count once and then kept
        on the host, so that steps after the warm-up wait for no device."""
        if self._warm is None:
            self._warm = self.warmup_steps > 0 and int(self.steps_taken) <= self.warmup_steps
        return self._warm

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._warm = None  # a loaded step count decides anew
        super()._load_from_state_dict(*args, **kwargs)

    def _warmup(self, z: torch.Tensor, flat: torch.Tensor) -> Quantized:
        """A warm-up step: the encodings, noisy and unquantised; remembered for k-means."""
        self._remember(flat.detach())
        codes = self._normed(flat + self.warmup_noise * torch.randn_like(flat))
        ids = _nearest(flat.detach(), self._normed(self.codebook.detach().float()))  # (M,)
        perplexity, usage = code_statistics(ids, self.codebook_size)
        # A zero loss that still reaches the codebook: data-parallel training expects every
        # parameter to receive a gradient each step.
        loss = 0.0 * self.codebook.sum()
        return Quantized(codes.reshape(z.shape).to(z.dtype), ids.reshape(z.shape[:-1]), loss, perplexity, usage)

    @torch.no_grad()
    def _remember(self, flat: torch.Tensor) -> None:
        """Append encodings to the ring of the latest `warmup_memory` ones."""
        flat = flat[-len(self.memory):]
        start = int(self.memory_size) % len(self.memory)
        idx = (start + torch.arange(len(flat), device=flat.device)) % len(self.memory)
        self.memory[idx] = flat.to(self.memory.dtype)
        self.memory_size += len(flat)

    @torch.no_grad()
    def _init_codebook(self, flat: torch.Tensor) -> None:
        """Place the codes by k-means over the remembered encodings and this batch's."""
        seen = self.memory[: min(int(self.memory_size), len(self.memory))]
        points = torch.cat([seen, flat.to(seen.dtype)])
        book = kmeans(points, self.codebook_size)
        if _distributed():
            torch.distributed.broadcast(book, src=0)  # every rank starts from rank 0's codebook
        self.codebook.data.copy_(book.to(self.codebook.dtype))
        self.idle_steps.zero_()

    @torch.no_grad()
    def _restart_dead_codes(self, ids: torch.Tensor, flat: torch.Tensor) -> None:
        used = torch.zeros(self.codebook_size, dtype=torch.bool, device=ids.device)
        used[ids] = True
        dist = torch.distributed
        synced = _distributed()
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
        self.restarted_codes += dead.numel()


def _nearest(flat: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (M,) for encodings (M, D) and codes (K, D)."""
    dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)  # (M, K)
    return dist.argmin(dim=1)


def _distributed() -> bool:
    """Whether this process is one of several in a torch.distributed group."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def kmeans(points: torch.Tensor, k: int, *, iters: int = 30, restarts: int = 8) -> torch.Tensor:
    """Centres (k, D) of `points` (N, D): k-means++ seeding, Lloyd iterations, the best of
    `restarts` runs by within-cluster squared distance. With fewer distinct points than k, the
    spare centres are copies of points, which dead-code restart later moves."""
    points = points.float()
    best, best_err = None, float("inf")
    for _ in range(restarts):
        centres = points[torch.randint(len(points), (1,), device=points.device)]
        for _ in range(k - 1):  # k-means++: a new centre with probability ∝ squared distance
            d2 = torch.cdist(points, centres).min(1).values.pow(2)
            pick = torch.multinomial(d2, 1) if d2.sum() > 0 else torch.randint(len(points), (1,), device=points.device)
            centres = torch.cat([centres, points[pick]])
        for _ in range(iters):
            ids = torch.cdist(points, centres).argmin(1)
            sums = torch.zeros_like(centres).index_add_(0, ids, points)
            counts = torch.bincount(ids, minlength=k).unsqueeze(1)
            centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        err = torch.cdist(points, centres).min(1).values.pow(2).sum().item()
        if err < best_err:
            best, best_err = centres, err
    assert best is not None
    return best
