"""Patch embedding and un-patchify between videos `(B, C, T, H, W)` and tokens `(B, T, N, D)`.

Spatial position is a learned embedding per patch. Temporal position is not added here: the
ST-transformer's temporal attention places frames with rotary embeddings (see
`opengenie.nn.attention`), which keeps cached keys valid when a rollout slides forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine/cosine positions (N=h·w, dim): any grid, no parameters."""
    quarter = dim // 4
    freq = 1.0 / (10_000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))  # (dim/4,)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    ang_y, ang_x = ys.flatten()[:, None] * freq, xs.flatten()[:, None] * freq  # (N, dim/4)
    pos = torch.cat([ang_y.sin(), ang_y.cos(), ang_x.sin(), ang_x.cos()], dim=1)  # (N, 4·(dim/4))
    return F.pad(pos, (0, dim - pos.shape[1]))


class PatchEmbed(nn.Module):
    """Video `(B, C, T, H, W)` → tokens `(B, T, N, D)`, N = (H/p)(W/p), plus spatial positions."""

    def __init__(self, in_channels: int, patch_size: int, dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.patch_size, self.grid = patch_size, grid
        self.proj = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.pos = nn.Parameter(torch.randn(grid[0] * grid[1], dim) * 0.02)  # (N, D)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        patches = rearrange(video, "b c t (h p1) (w p2) -> b t (h w) (p1 p2 c)", p1=p, p2=p)
        return self.proj(patches) + self.pos  # (B, T, N, D)


class Unpatchify(nn.Module):
    """Tokens `(B, T, N, D)` → video `(B, C, T, H, W)`: a linear map to pixels of each patch."""

    def __init__(self, dim: int, out_channels: int, patch_size: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.patch_size, self.grid, self.out_channels = patch_size, grid, out_channels
        self.proj = nn.Linear(dim, out_channels * patch_size * patch_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pixels = self.proj(tokens)  # (B, T, N, p*p*C)
        return rearrange(pixels, "b t (h w) (p1 p2 c) -> b c t (h p1) (w p2)",
                         h=self.grid[0], p1=p, p2=p, c=self.out_channels)


class PixelHead(nn.Module):
    """Redraws the decoder's patches at full resolution: tokens `(B, T, N, D)` and their linear
    patches `(B, C, T, H, W)` → patches + a correction `(B, C, T, H, W)`.

    A linear map draws each patch on its own, from one token, in a `D`-dimensional space of
    patches: edges that cross a patch border are drawn twice and rarely meet. The head spreads
    each token over its patch's pixels as features, adds the patches themselves, and runs 3×3
    residual convolutions over the whole frame, one frame at a time (so decoding stays causal
    and a cached rollout decodes only its newest frame). The last convolution starts at zero:
    a head added to a trained decoder starts as that decoder.
    """

    def __init__(self, dim: int, out_channels: int, patch_size: int, grid: tuple[int, int],
                 channels: int, blocks: int) -> None:
        super().__init__()
        self.features = Unpatchify(dim, channels, patch_size, grid)
        self.inp = nn.Conv2d(out_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(1, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                          nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))
            for _ in range(blocks))
        self.out = nn.Sequential(nn.GroupNorm(1, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, tokens: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        t = patches.shape[2]
        frames = rearrange(patches, "b c t h w -> (b t) c h w")  # (B·T, C, H, W)
        x = rearrange(self.features(tokens), "b c t h w -> (b t) c h w") + self.inp(frames)  # (B·T, ch, H, W)
        for block in self.blocks:
            x = x + block(x)
        return rearrange(frames + self.out(x), "(b t) c h w -> b c t h w", t=t)  # (B, C, T, H, W)
