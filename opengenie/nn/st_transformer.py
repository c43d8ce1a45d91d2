"""The spatiotemporal (ST) transformer of Genie §2.1.

Each block attends within a frame (spatial, H'·W' tokens), then across frames at each spatial
position (temporal, T tokens, causal), then applies ONE feed-forward layer. Cost and memory
grow linearly in T instead of quadratically in T·H'·W'.

Token layout everywhere in this module: `(B, T, N, D)` with N = H'·W' tokens per frame.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from opengenie.nn.attention import Attention, KVCache
from opengenie.nn.blueprint import register


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mlp_ratio: float = 4.0) -> None:
        hidden = int(dim * mlp_ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class STBlock(nn.Module):
    """Spatial attention → causal temporal attention → one feed-forward; pre-norm residuals.

    `cond` (B, T, cond_dim), when the block was built with `cond_dim`, is projected and added to
    every token of frame t before the block: the latent action model's decoder uses it for a_t.
    """

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, *, mlp_ratio: float = 4.0,
                 qk_norm: bool = False, causal: bool = True, cond_dim: int | None = None) -> None:
        super().__init__()
        self.norm_space = nn.LayerNorm(dim)
        self.space = Attention(dim, heads, head_dim, qk_norm=qk_norm)
        self.norm_time = nn.LayerNorm(dim)
        self.time = Attention(dim, heads, head_dim, causal=causal, qk_norm=qk_norm, rope=True)
        self.norm_ff = nn.LayerNorm(dim)
        # Genie §2.1: a single FFW after both attentions (none after the spatial layer).
        self.ff = FeedForward(dim, mlp_ratio)
        self.cond = nn.Linear(cond_dim, dim) if cond_dim else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        b, t, n, _ = x.shape
        if self.cond is not None:
            if cond is None:
                raise ValueError("this block was built with cond_dim and needs `cond` (B, T, cond_dim)")
            x = x + self.cond(cond)[:, :, None, :]  # (B, T, 1, D) broadcast over the frame
        h = rearrange(self.norm_space(x), "b t n d -> (b t) n d")
        x = x + rearrange(self.space(h), "(b t) n d -> b t n d", b=b)
        h = rearrange(self.norm_time(x), "b t n d -> (b n) t d")
        x = x + rearrange(self.time(h, cache), "(b n) t d -> b t n d", b=b)
        return x + self.ff(self.norm_ff(x))


class STTransformer(nn.Module):
    """A stack of `depth` ST blocks and a final LayerNorm, over tokens `(B, T, N, D)`."""

    def __init__(self, dim: int, depth: int, heads: int, head_dim: int | None = None, *,
                 mlp_ratio: float = 4.0, qk_norm: bool = False, causal: bool = True,
                 cond_dim: int | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            STBlock(dim, heads, head_dim, mlp_ratio=mlp_ratio, qk_norm=qk_norm, causal=causal,
                    cond_dim=cond_dim)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, cond=cond, cache=cache)
        return self.norm(x)


@register("space-time_attn", "st_transformer")
class SpaceTimeAttention(nn.Module):
    """Blueprint block: one `STBlock` for videos laid out `(B, D, T, H, W)`.

    There is no final norm: a model that ends a blueprint with these blocks applies its own.
    Seed keywords: `n_rep` (handled by the builder: blocks are stacked), `n_embd` (width D),
    `n_head`, `d_head`, `has_ext` with `time_attn_kw={"key_dim": K}` (the block takes external
    conditioning `cond` (B, T, K), e.g. a latent action per frame), and `transpose`
    (True: the block's input and output are channel-last `(B, T, H, W, D)` instead).
    """

    accepts = ("cond", "cache")

    def __init__(self, n_embd: int, n_head: int = 8, d_head: int | None = None, has_ext: bool = False,
                 time_attn_kw: dict | None = None, transpose: bool = False, qk_norm: bool = False,
                 mlp_ratio: float = 4.0, causal: bool = True) -> None:
        super().__init__()
        cond_dim = None
        if has_ext:
            if not time_attn_kw or "key_dim" not in time_attn_kw:
                raise ValueError("space-time_attn with has_ext=True needs time_attn_kw={'key_dim': K}")
            cond_dim = int(time_attn_kw["key_dim"])
        self.transpose = transpose
        self.block = STBlock(n_embd, n_head, d_head, mlp_ratio=mlp_ratio, qk_norm=qk_norm,
                             causal=causal, cond_dim=cond_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        layout = "b t h w d" if self.transpose else "b d t h w"
        h, w = (x.shape[2], x.shape[3]) if self.transpose else (x.shape[3], x.shape[4])
        tokens = rearrange(x, f"{layout} -> b t (h w) d")
        tokens = self.block(tokens, cond=cond, cache=cache)
        return rearrange(tokens, f"b t (h w) d -> {layout}", h=h, w=w)


def compile_blocks(module: nn.Module) -> int:
    """torch.compile every ST block inside `module`, in place (parameter names, and so
    checkpoints, do not change) → how many. The blocks hold the compute and every path reaches
    them through `__call__` (training losses, generation, decoding, blueprint-built stacks);
    compiling a model's `forward` alone misses the paths that do not go through it
    (`compute_loss`, `generate`). Whether it pays: `python bench/compile.py`."""
    blocks = [m for m in module.modules() if isinstance(m, STBlock)]
    for block in blocks:
        block.compile()
    return len(blocks)
