"""Multi-head attention for the ST-transformer: spatial (within a frame) and causal temporal
(across frames at one spatial position), both through `F.scaled_dot_product_attention`, so
the GPU takes the flash / memory-efficient kernels and the CPU its fused one.

Temporal attention places frames with rotary embeddings (RoPE) instead of absolute
embeddings. Keys cached for past frames then stay valid when a rollout slides past the
training length: only relative distances matter, and the engine drops the oldest frames.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class KVCache:
    """Keys and values of past frames, one entry per temporal attention layer.

    Generation runs the newest frame many times (one MaskGIT step each) against a fixed past.
    Outside `appending()` the layers read the cache and leave it as it is; the engine runs one
    last pass inside `with cache.appending():` once the frame's tokens are final, which appends them.
    `max_frames` bounds the history: older frames are dropped as new ones arrive.

    Each layer's keys and values live in preallocated buffers (B', heads, capacity, d): a step
    copies only its own frame into the slot after the held frames and attends to a view of the
    buffer, so no step concatenates the history. Appending past `max_frames` moves the newest
    frames to the front only once the spare capacity (another `max_frames`) is used up.
    """

    def __init__(self, max_frames: int | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"a cache must hold at least one frame, got max_frames={max_frames}")
        self.max_frames = max_frames
        self.write = False
        self._buf: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._len: dict[int, int] = {}  # frames held, per layer
        self._first: dict[int, int] = {}  # buffer index of the oldest held frame, per layer
        self._pos: dict[int, int] = {}  # absolute index of the next frame, per layer

    @contextlib.contextmanager
    def appending(self) -> Iterator["KVCache"]:
        """Within this block every layer's pass appends its keys/values (the frames are final)."""
        self.write = True
        try:
            yield self
        finally:
            self.write = False

    def __len__(self) -> int:
        """Number of frames held (the same for every layer)."""
        return next(iter(self._len.values())) if self._len else 0

    def position(self, layer: nn.Module) -> int:
        """Absolute frame index at which `layer`'s next input starts (for RoPE)."""
        return self._pos.get(id(layer), 0)

    def _room(self, key: int, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The layer's buffers with space for `k`'s frames after the held ones, and the first held index."""
        held, first, t = self._len.get(key, 0), self._first.get(key, 0), k.shape[2]
        buf = self._buf.get(key)
        if buf is not None and buf[0].shape[:2] + buf[0].shape[3:] != k.shape[:2] + k.shape[3:]:
            raise ValueError(f"this cache holds keys of shape (B', heads, t, d) = {tuple(buf[0].shape)}, "
                             f"got {tuple(k.shape)}: one cache serves one batch of rollouts")
        if buf is not None and buf[0].dtype == k.dtype and first + held + t <= buf[0].shape[2]:
            return buf[0], buf[1], first
        # Grow, or move the held frames to the front (they are at most max_frames).
        capacity = max(held + t + (self.max_frames or held + t), 2 * (held + t))
        fresh = tuple(k.new_empty(k.shape[:2] + (capacity,) + k.shape[3:]) for _ in range(2))
        if buf is not None:
            for old, new in zip(buf, fresh):
                new[:, :, :held] = old[:, :, first:first + held]
        self._buf[key], self._first[key] = fresh, 0
        return fresh[0], fresh[1], 0

    def extend(self, layer: nn.Module, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Past keys/values followed by `k`, `v` (each (B', heads, t, d)); stored if `write`."""
        key, t = id(layer), k.shape[2]
        kbuf, vbuf, first = self._room(key, k)
        held = self._len.get(key, 0)
        stop = first + held + t
        kbuf[:, :, first + held:stop], vbuf[:, :, first + held:stop] = k, v  # a slot past the held frames
        keys, values = kbuf[:, :, first:stop], vbuf[:, :, first:stop]  # (B', heads, held + t, d) views
        if self.write:
            keep = held + t if self.max_frames is None else min(held + t, self.max_frames)
            self._pos[key] = self.position(layer) + t
            self._first[key], self._len[key] = stop - keep, keep
        return keys, values


@functools.lru_cache(maxsize=64)
def _rotation(start: int, t: int, d: int, base: float, device: torch.device) -> torch.Tensor:
    """e^{i·pos·θ_j} for positions start..start+t and the d/2 frequencies θ_j: (t, d/2) complex64."""
    inv_freq = base ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)  # (d/2,)
    pos = torch.arange(start, start + t, device=device, dtype=torch.float32)
    return torch.polar(torch.ones(t, d // 2, device=device), torch.outer(pos, inv_freq))  # (t, d/2)


def rotary(x: torch.Tensor, start: int, base: float = 10_000.0) -> torch.Tensor:
    """Rotate pairs of channels (2j, 2j+1) of `x` (B', heads, t, d) by angles set by positions
    start..start+t: one complex product per pair, the angles computed once per (start, t)."""
    t, d = x.shape[-2], x.shape[-1]
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2))  # (B', heads, t, d/2)
    return torch.view_as_real(pairs * _rotation(start, t, d, base, x.device)).flatten(-2).to(x.dtype)


class Attention(nn.Module):
    """Self-attention over the middle axis of `(B', L, D)`; optionally causal, QK-normed, rotary."""

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, *, causal: bool = False,
                 qk_norm: bool = False, rope: bool = False) -> None:
        super().__init__()
        head_dim = head_dim or dim // heads
        if rope and head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.heads, self.causal, self.rope = heads, causal, rope
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.proj = nn.Linear(heads * head_dim, dim, bias=False)
        # Genie §2.1 / Dehghani et al. 2023: normalising queries and keys keeps the attention
        # logits bounded, which is what lets the dynamics model train stably in bfloat16.
        self.q_norm = nn.RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        qkv = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        v = qkv[2]
        if isinstance(self.q_norm, nn.RMSNorm):
            # Both norms in one call over the stacked queries and keys (the same arithmetic as
            # q_norm(q), k_norm(k); a play step runs dozens of these on tiny tensors), in fp32:
            # their weights are fp32, and under bf16 autocast the inputs are not.
            weight = torch.stack([self.q_norm.weight, self.k_norm.weight])[:, None, None, None]  # (2, 1, 1, 1, d)
            q, k = (F.rms_norm(qkv[:2].float(), qkv.shape[-1:], eps=self.q_norm.eps) * weight).to(v.dtype)
        else:
            q, k = qkv[0], qkv[1]
        start = cache.position(self) if cache is not None else 0
        if self.rope:
            q, k = rotary(q, start), rotary(k, start)
        if cache is not None:
            k, v = cache.extend(self, k, v)  # (B', h, past + L, d)
        past = k.shape[2] - q.shape[2]
        if self.causal and q.shape[2] > 1:
            # Query i (absolute past + i) sees keys 0..past + i. SDPA's own is_causal aligns the
            # diagonal top-left, which is wrong once a cache makes keys outnumber queries.
            mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif q.shape[2] == 1 and k.shape[2] > 1:
            # One query per sequence (a play step's new frame against its cached past): two
            # batched products cost two thirds of the fused kernel's set-up on the CPU.
            weights = torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)  # (B', h, 1, past + 1)
            out = weights @ v  # (B', h, 1, d)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))
