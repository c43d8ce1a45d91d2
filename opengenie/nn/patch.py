"""Patch embedding and un-patchify between videos `(B, C, T, H, W)` and tokens `(B, T, N, D)`.

Spatial position is a learned embedding per patch. Temporal position is not added here: the
ST-transformer's temporal attention places frames with rotary embeddings (see
`opengenie.nn.attention`), which keeps cached keys valid when a rollout slides forward.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

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
