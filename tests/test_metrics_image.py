"""PSNR and SSIM: exact values on identical frames, monotone in noise, agreement with a reference."""

from __future__ import annotations

import math

import pytest
import torch

from opengenie.evaluation.image_metrics import psnr, ssim


def _images(n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images (N, 3, size, size) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def _noisy(x: torch.Tensor, level: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + level * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_psnr_identical_is_inf() -> None:
    """Identical frames have infinite PSNR."""
    x = _images()
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_known_value() -> None:
    """A constant error d in [-1, 1] gives 10 log10(2^2 / d^2) dB."""
    x = torch.zeros(2, 3, 8, 8)
    expected = 10 * math.log10(4 / 0.1**2)
    torch.testing.assert_close(psnr(x, x + 0.1), torch.full((2,), expected, dtype=torch.float64))


def test_psnr_and_ssim_fall_with_noise() -> None:
    """More noise means lower PSNR and lower SSIM, image by image."""
    x = _images()
    levels = [0.01, 0.05, 0.1, 0.3]
    p = torch.stack([psnr(x, _noisy(x, s)) for s in levels])  # (levels, N)
    s = torch.stack([ssim(x, _noisy(x, s)) for s in levels])
    assert (p[1:] < p[:-1]).all()
    assert (s[1:] < s[:-1]).all()


def test_ssim_identical_is_one() -> None:
    """SSIM of identical frames is exactly 1."""
    x = _images()
    assert (ssim(x, x) == 1).all()


def test_video_scores_per_frame() -> None:
    """Videos (B, C, T, H, W) give one score per frame, equal to scoring the frames as images."""
    video = _images(n=6).reshape(2, 3, 3, 32, 32).transpose(1, 2)  # (B=2, C=3, T=3, H, W)
    other = _noisy(video, 0.1)
    assert psnr(video, other).shape == (2, 3)
    frame = (slice(None), slice(None), 1)
    torch.testing.assert_close(ssim(video, other)[:, 1], ssim(video[frame], other[frame]))
    torch.testing.assert_close(psnr(video, other)[:, 1], psnr(video[frame], other[frame]))


def test_ssim_matches_scipy_reference() -> None:
    """SSIM equals a direct scipy.ndimage computation (Gaussian sigma 1.5, 11 taps, valid region)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    x = _images(n=1, size=24)
    y = _noisy(x, 0.2)
    a, b = x[0].double().numpy(), y[0].double().numpy()

    def blur(img: np.ndarray) -> np.ndarray:
        # truncate=3.5 -> radius 5 -> an 11-tap window; crop 5 pixels: only full windows count.
        return ndimage.gaussian_filter(img, sigma=1.5, truncate=3.5)[5:-5, 5:-5]

    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    maps = []
    for ca, cb in zip(a, b):
        mu_a, mu_b = blur(ca), blur(cb)
        va, vb, cov = blur(ca * ca) - mu_a**2, blur(cb * cb) - mu_b**2, blur(ca * cb) - mu_a * mu_b
        maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))
    assert ssim(x.double(), y.double()).item() == pytest.approx(float(np.mean(maps)), abs=1e-10)


def test_mismatched_or_small_inputs_are_rejected() -> None:
    """Shape errors name the expected layout; SSIM needs frames at least as large as its window."""
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
