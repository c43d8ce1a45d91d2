"""PSNR and SSIM: pixel-level similarity of frames, as pure functions over tensors.

Both take images (N, C, H, W) or videos (B, C, T, H, W) in [-1, 1] — the package's frame
convention — and score every frame separately: (N,) for images, (B, T) for videos. Genie's
controllability metric, ΔtPSNR, is a difference of two PSNRs at one frame index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

# The values in [-1, 1] span 2; PSNR and SSIM depend on the range through this constant.
DATA_RANGE = 2.0


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim not in (4, 5):
        raise ValueError(
            "expected two images (N, C, H, W) or videos (B, C, T, H, W) of the same shape, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def _as_frames(x: torch.Tensor) -> torch.Tensor:
    # Videos are scored frame by frame: fold time into the batch.
    return rearrange(x, "b c t h w -> (b t) c h w") if x.ndim == 5 else x


def _unfold_result(score: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return rearrange(score, "(b t) -> b t", b=like.shape[0]) if like.ndim == 5 else score


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per frame.

    Args:
        x, y: (N, C, H, W) or (B, C, T, H, W) float in [-1, 1] (or any range of width
            `data_range`).
    Returns:
        (N,) or (B, T) float64; +inf where the frames are identical.
    """
    _check_pair(x, y)
    # float64: a float32 mean of many tiny squared errors loses the digits PSNR reports.
    mse = (_as_frames(x).double() - _as_frames(y).double()).pow(2).mean(dim=(1, 2, 3))  # (N,)
    return _unfold_result(10.0 * torch.log10(data_range**2 / mse), x)


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()  # (C, 1, k, k)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = DATA_RANGE,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity (Wang et al., 2004), per frame.

    Local statistics use an 11x11 Gaussian window (sigma 1.5) over "valid" positions only, per
    channel; the SSIM map is averaged over channels and positions.

    Args:
        x, y: (N, C, H, W) or (B, C, T, H, W) float in [-1, 1]; H, W >= window_size.
    Returns:
        (N,) or (B, T) float, at most 1 (exactly 1 for identical frames).
    """
    _check_pair(x, y)
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"SSIM needs frames of at least {window_size}x{window_size}, got {tuple(x.shape)}")
    a, b = _as_frames(x), _as_frames(y)
    if not a.is_floating_point() or a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    channels = a.shape[1]
    window = _gaussian_window(window_size, sigma, channels, a)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)  # (N, C, H-k+1, W-k+1)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return _unfold_result(ssim_map.mean(dim=(1, 2, 3)), x)
