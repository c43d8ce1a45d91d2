"""Multi-head attention for the ST-transformer: spatial (within a frame) and causal temporal
(across frames at one spatial position), both through `F.scaled_dot_product_attention`, so
the GPU takes the flash / memory-efficient kernels and the CPU its fused one.

Temporal attention places frames with rotary embeddings (RoPE) instead of absolute
embeddings. Keys cached for past frames then stay valid when a rollout slides past the
training length: only relative distances matter, and the cache drops the oldest frames.
"""

from __future__ import annotations

import contextlib
import math
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

    Each layer's keys and values live in a preallocated ring (B', heads, capacity + 1, d) of
    fixed shape. Keys are stored already rotated (RoPE), so attention does not care in which
    slot a frame sits: a new frame overwrites the oldest one's slot, and a validity mask hides
    slots never written. The last slot is scratch: a one-frame step copies its own keys there
    and attends to the whole ring, so it copies nothing else. Positions and the mask are tensors
    and every shape is fixed, so a compiled step (`Rollout(compile=True)`) never recompiles as a
    rollout advances.
    """

    def __init__(self, max_frames: int | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"a cache must hold at least one frame, got max_frames={max_frames}")
        self.max_frames = max_frames
        self.write = False
        self._ring: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # (B', heads, capacity + 1, d) each
        self._valid: dict[int, torch.Tensor] = {}  # (capacity + 1,) bool: which slots hold a frame
        self._pos: dict[int, torch.Tensor] = {}  # () int64: absolute index of the layer's next frame

    @contextlib.contextmanager
    def appending(self) -> Iterator["KVCache"]:
        """Within this block every layer's pass appends its keys/values (the frames are final)."""
        self.write = True
        try:
            yield self
        finally:
            self.write = False

    def __len__(self) -> int:
        """Number of frames held (the same for every layer; the first row's, in a stack)."""
        if not self._valid:
            return 0
        valid = next(iter(self._valid.values()))  # (capacity + 1,), or (B', capacity + 1) in a stack
        return int((valid if valid.dim() == 1 else valid[0])[:-1].sum())

    def position(self, layer: nn.Module) -> torch.Tensor | int:
        """Absolute frame index at which `layer`'s next input starts (for RoPE): a () tensor, or
        (B',) one per row in a stack of caches (`stack`)."""
        return self._pos.get(id(layer), 0)

    # --- several rollouts' caches as one batch --------------------------------------------

    @classmethod
    def stack(cls, caches: list["KVCache"]) -> "KVCache":
        """The caches of several rollouts of one world side by side, as one cache whose rows keep
        their own positions and held frames, for one-frame steps taken together (the play
        server's players). The rollouts may stand at different frames: keys are stored rotated
        and the mask is per row, so a row reads exactly what its own cache holds. The stack is a
        copy (its rows B' are the rollouts' rows, in order); write it back with `unstack`."""
        first = caches[0]
        if first.max_frames is None or any(c.max_frames != first.max_frames or c._ring.keys() != first._ring.keys()
                                           or any(v.dim() != 1 for v in c._valid.values()) for c in caches):
            raise ValueError("only bounded caches of single rollouts of one world, all prefilled, can be stacked")
        out = cls(first.max_frames)
        for key in first._ring:
            rows = [c._ring[key][0].shape[0] for c in caches]
            out._ring[key] = tuple(torch.cat([c._ring[key][i] for c in caches]) for i in range(2))  # (B', heads, S, d)
            out._valid[key] = torch.cat([c._valid[key].expand(r, -1) for c, r in zip(caches, rows)])  # (B', S)
            out._pos[key] = torch.cat([c._pos[key].expand(r) for c, r in zip(caches, rows)])  # (B',)
        return out

    def repeat(self, n: int) -> "KVCache":
        """A read-only copy whose B'·n rows are this cache's rows n times over (row a·B' + i is
        row i), for one-frame steps that run every row against several inputs at once (action
        guidance: each row under every latent action). Nothing is written back."""
        out = type(self)(self.max_frames)
        for key, ring in self._ring.items():
            valid, pos = self._valid[key], self._pos[key]
            rows = ring[0].shape[0]
            out._ring[key] = tuple(r.repeat(n, 1, 1, 1) for r in ring)
            out._valid[key] = valid.repeat(n, 1) if valid.dim() == 2 else valid.expand(rows * n, -1).clone()
            out._pos[key] = pos.repeat(n) if pos.dim() == 1 else pos.expand(rows * n).clone()
        return out

    def unstack(self, caches: list["KVCache"]) -> None:
        """Copy this stack's rows back into the caches it was stacked from (in the same order)."""
        for key in self._ring:
            start = 0
            for cache in caches:
                rows = cache._ring[key][0].shape[0]
                for mine, theirs in zip(self._ring[key], cache._ring[key]):
                    theirs.copy_(mine[start:start + rows])
                cache._valid[key].copy_(self._valid[key][start])  # a rollout's rows hold the same frames
                cache._pos[key].copy_(self._pos[key][start])
                start += rows

    def _layer(self, key: int, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layer's ring buffers and validity mask, allocated on its first frames."""
        ring = self._ring.get(key)
        if ring is None:
            capacity = self.max_frames or max(8, k.shape[2])
            ring = tuple(k.new_zeros(k.shape[:2] + (capacity + 1,) + k.shape[3:]) for _ in range(2))
            self._ring[key], self._pos[key] = ring, torch.zeros((), dtype=torch.long, device=k.device)
            self._valid[key] = torch.zeros(capacity + 1, dtype=torch.bool, device=k.device)
            self._valid[key][-1] = True  # the scratch slot holds the frame being computed
        elif ring[0].shape[:2] + ring[0].shape[3:] != k.shape[:2] + k.shape[3:]:
            raise ValueError(f"this cache holds keys of shape (B', heads, t, d) = {tuple(ring[0].shape)}, "
                             f"got {tuple(k.shape)}: one cache serves one batch of rollouts")
        return ring[0], ring[1], self._valid[key]

    def _grow(self, key: int, frames: int) -> None:
        """An unbounded cache about to run out of slots gets twice the room (never while compiled)."""
        if self.max_frames is not None:
            return
        kring, vring = self._ring[key]
        capacity, held = kring.shape[2] - 1, int(self._valid[key][:-1].sum())
        if held + frames <= capacity:
            return
        bigger = max(2 * capacity, held + frames)
        pad = (0, 0, 0, bigger - capacity)
        self._ring[key] = tuple(F.pad(r[:, :, :-1], pad) for r in (kring, vring))
        self._ring[key] = tuple(torch.cat([r, r[:, :, :1]], dim=2) for r in self._ring[key])  # + scratch
        self._valid[key] = torch.cat([self._valid[key][:-1], self._valid[key].new_zeros(bigger - capacity + 1)])
        self._valid[key][-1] = True

    def extend(self, layer: nn.Module, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Past keys/values and `k`, `v` (each (B', heads, t, d)) → keys, values (B', heads, S, d)
        and the mask (t, S) of the keys each new frame's query may read (held frames, and new
        frames up to its own); `k`, `v` are stored if `write`."""
        key, t = id(layer), k.shape[2]
        if self.write and key in self._ring:
            self._grow(key, t)
        kring, vring, valid = self._layer(key, k)
        capacity = kring.shape[2] - 1
        per_row = valid.dim() == 2  # a stack of caches (`stack`): a mask and a position per row
        if t == 1:  # a play step: the frame goes to the scratch slot, the ring is read in place
            kring[:, :, capacity:] = k
            vring[:, :, capacity:] = v
            keys, values = kring, vring
            mask = valid[:, None, None] if per_row else valid[None]  # (B', 1, 1, capacity + 1) or (1, capacity + 1)
        elif per_row:
            raise ValueError("a stack of caches takes one-frame steps only; prefill each rollout's own cache")
        else:  # a prompt: held frames, then the new ones causally
            keys, values = torch.cat([kring[:, :, :capacity], k], dim=2), torch.cat([vring[:, :, :capacity], v], dim=2)
            causal = torch.ones(t, t, dtype=torch.bool, device=k.device).tril()
            mask = torch.cat([valid[None, :capacity].expand(t, capacity), causal], dim=1)  # (t, capacity + t)
        if self.write:
            if t == 1:  # the reads above are views of the ring, which the writes below change
                keys, values, mask = keys.clone(), values.clone(), mask.clone()
            pos = self._pos[key]
            if per_row:  # each row's oldest slot
                rows, slot = torch.arange(k.shape[0], device=k.device), pos % capacity  # (B',) each
                kring[rows, :, slot] = k[:, :, 0]
                vring[rows, :, slot] = v[:, :, 0]
                valid[rows, slot] = True
            else:
                kept = min(t, capacity)  # a prompt longer than the ring leaves only its newest frames
                slots = (pos + torch.arange(t - kept, t, device=k.device)) % capacity  # (kept,)
                kring.index_copy_(2, slots, k[:, :, t - kept:])
                vring.index_copy_(2, slots, v[:, :, t - kept:])
                valid.index_fill_(0, slots, True)
            pos.add_(t)
        return keys, values, mask


class TwinFrames:
    """The time layout of a twin pass over 2T frames: frames 1..T, then the same T frames again
    as their twins. Frame t reads frames 1..t as usual; twin t reads frames 1..t−1 and itself
    only, at frame t's position. One pass then gives every frame's prediction twice: as trained,
    and with whatever its twin changes (another incoming action) against the same past, which
    is what a rollout's step sees when it varies the newest frame's action against its cache
    (action guidance). Passed where a `KVCache` goes; it holds nothing between passes."""

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"a twin pass needs at least one frame, got {frames}")
        self.frames = frames

    def position(self, layer: nn.Module) -> int:
        return 0

    def extend(self, layer: nn.Module, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys `k` (B', heads, 2T, d) rotated at positions 0..2T−1 and values `v` → keys, values
        (B', heads, 3T, d) and the mask (2T, 3T): twin t sits at position T + t, so it reads the
        frames through a copy of their keys rotated T further (distances stay t − s)."""
        t = self.frames
        if k.shape[2] != 2 * t:
            raise ValueError(f"a twin pass of {t} frames takes 2·{t} frames, got {k.shape[2]}")
        shifted = k[:, :, :t]
        if getattr(layer, "rope", False):  # every frame's key T positions further: a one-position axis each
            shifted = rotary(shifted[..., None, :], t, layer.rope_freqs)[..., 0, :]
        keys = torch.cat([k, shifted], dim=2)  # frames, twins, frames again at the twins' positions
        values = torch.cat([v, v[:, :, :t]], dim=2)
        eye = torch.eye(t, dtype=torch.bool, device=k.device)
        before = torch.ones(t, t, dtype=torch.bool, device=k.device).tril(-1)
        none = torch.zeros(t, t, dtype=torch.bool, device=k.device)
        mask = torch.cat([torch.cat([before | eye, none, none], dim=1),  # frame t: frames 1..t
                          torch.cat([none, eye, before], dim=1)])  # twin t: itself, frames 1..t−1
        return keys, values, mask


def rotary_frequencies(d: int, base: float = 10_000.0) -> torch.Tensor:
    """The d/2 rotation frequencies θ_j = base^(-2j/d) of RoPE over d channels: (d/2,) fp32."""
    return base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)


def rotary(x: torch.Tensor, start: torch.Tensor | int, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels (2j, 2j+1) of `x` (B', heads, t, d) by the angles pos·θ_j of
    positions start..start+t (`start` an int, a () tensor as a cache keeps it, or (B',) one per
    row as a stack of caches keeps them) and the frequencies `freqs` (d/2,) θ_j
    (`rotary_frequencies`). Real arithmetic, (a, b) → (a cos − b sin, a sin + b cos): the
    complex product, in a form torch.compile fuses."""
    t, d = x.shape[-2], x.shape[-1]
    pos = torch.arange(t, device=x.device, dtype=torch.float32)  # (t,)
    if isinstance(start, torch.Tensor) and start.dim() == 1:
        angles = ((pos + start[:, None])[..., None] * freqs.float())[:, None]  # (B', 1, t, d/2)
    else:
        angles = torch.outer(pos + start, freqs.float())  # (t, d/2)
    cos, sin = angles.cos(), angles.sin()
    pairs = x.float().unflatten(-1, (d // 2, 2))  # (B', heads, t, d/2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).to(x.dtype)


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
        if rope:  # not saved: a function of head_dim alone
            self.register_buffer("rope_freqs", rotary_frequencies(head_dim), persistent=False)

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
            q, k = rotary(q, start, self.rope_freqs), rotary(k, start, self.rope_freqs)
        if cache is not None:
            k, v, mask = cache.extend(self, k, v)  # (B', h, S, d) and which of the S keys each query reads
            if q.shape[2] == 1:
                # One query per sequence (a play step's new frame against its cached past): two
                # batched products cost less than the fused kernel's set-up on the CPU.
                scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B', h, 1, S)
                out = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1) @ v  # (B', h, 1, d)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif self.causal and q.shape[2] > 1:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))
