"""Multi-head attention for the ST-transformer: spatial (within a frame) and causal temporal
(across frames at one spatial position), both through `F.scaled_dot_product_attention`, so
the GPU takes the flash / memory-efficient kernels and the CPU its fused one.

Temporal attention places frames with rotary embeddings (RoPE) instead of absolute
embeddings. Keys cached for past frames then stay valid when a rollout slides past the
training length: only relative distances matter, and the engine drops the oldest frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class KVCache:
    """Keys and values of past frames, one entry per temporal attention layer.

    Generation runs the newest frame many times (one MaskGIT step each) against a fixed past.
    While `write` is False the layers read the cache and leave it as it is; the engine runs one
    last pass with `write = True` once the frame's tokens are final, which appends them.
    `max_frames` bounds the history: older frames are dropped as new ones arrive.
    """

    def __init__(self, max_frames: int | None = None) -> None:
        self.max_frames = max_frames
        self.write = False
        self._kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pos: dict[int, int] = {}  # absolute index of the next frame, per layer

    def __len__(self) -> int:
        """Number of frames held (the same for every layer)."""
        return next(iter(self._kv.values()))[0].shape[2] if self._kv else 0

    def position(self, layer: nn.Module) -> int:
        """Absolute frame index at which `layer`'s next input starts (for RoPE)."""
        return self._pos.get(id(layer), 0)

    def extend(self, layer: nn.Module, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Past keys/values followed by `k`, `v` (each (B', heads, t, d)); stored if `write`."""
        past = self._kv.get(id(layer))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if self.write:
            keep = k.shape[2] if self.max_frames is None else min(k.shape[2], self.max_frames)
            self._pos[id(layer)] = self.position(layer) + k.shape[2] - (past[0].shape[2] if past else 0)
            self._kv[id(layer)] = (k[:, :, -keep:], v[:, :, -keep:])
        return k, v


def rotary(x: torch.Tensor, start: int, base: float = 10_000.0) -> torch.Tensor:
    """Rotate pairs of channels of `x` (B', heads, t, d) by angles set by positions start..start+t."""
    t, d = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (d/2,)
    pos = torch.arange(start, start + t, device=x.device, dtype=torch.float32)
    angles = torch.outer(pos, inv_freq)  # (t, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


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
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        # Norms in fp32 (their weights are fp32; under bf16 autocast the inputs are not).
        q, k = self.q_norm(q.float()).to(v.dtype), self.k_norm(k.float()).to(v.dtype)
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
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # one query sees all of the past
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))
