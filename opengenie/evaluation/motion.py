"""Visible camera motion between consecutive frames, estimated from the pixels alone.

In a side-scroller the camera follows the player, so walking right slides the whole scene left
and a jump slides it down. `camera_shift` finds, for each pair of frames, the shift of the
first frame that best explains the second: an exhaustive search over integer shifts of up to
`max_shift` pixels (mean squared error over the central crop that every shift can see), then a
parabola through the error at the best shift and its neighbours for the sub-pixel part.

Conventions, in image coordinates: dx > 0 the camera moved right (the scene moved left),
dy < 0 the camera moved up (the scene moved down). The aligned PSNR, the PSNR of the second
frame against the best-shifted first one, is high for a frame that is its predecessor moved
and low for a frame that broke: the playability report's test of a visibly broken frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MAX_SHIFT = 6  # px per step at 64×64: CoinRun's fastest falls move the camera ~4 px a step


def max_shift_for(frame_skip: int, size: int = 64) -> int:
    """The search range for transitions `frame_skip` frames apart: MAX_SHIFT a frame, within the frame."""
    return min(MAX_SHIFT * frame_skip, size // 2 - 4)


@dataclass
class Shift:
    """Per pair of frames (N,): dx, dy in px (camera motion, see module doc) and the aligned PSNR in dB."""

    dx: torch.Tensor
    dy: torch.Tensor
    aligned_psnr: torch.Tensor


def _as_float(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 or (N, C, H, W) float in [-1, 1] → (N, C, H, W) float32 in [0, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype == torch.uint8:
        return x.permute(0, 3, 1, 2).float() / 255
    return (x.float().clamp(-1, 1) + 1) / 2


def _subpixel(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through three errors at offsets −1, 0, +1, clamped to ±0.5."""
    curve = minus - 2 * centre + plus
    offset = torch.where(curve > 1e-12, (minus - plus) / (2 * curve.clamp(min=1e-12)), torch.zeros_like(curve))
    return offset.clamp(-0.5, 0.5)


def _error_surface(x: torch.Tensor, y: torch.Tensor, r: int) -> torch.Tensor:
    """err[n, i, j] = MSE of y's central crop against x moved by (sy, sx) = (i − r, j − r):
    second(p) = first(p + s), for frames x, y (n, C, H, W) in [0, 1] → (n, 2r+1, 2r+1) float64.

    Σ(x_s − y)² = Σx_s² − 2 Σx_s·y + Σy²: the cross term of every shift at once is one
    correlation (an FFT product, no wrap-around since a shift never leaves the frame), the first
    a box sum of an integral image. In float64 the errors match the direct sum to ~1e-15, so
    exact matches (MSE 0) and textureless frames are still recognised below.
    """
    x, y = x.double(), y.double()
    h, w = x.shape[-2:]
    size = 2 * r + 1
    target = y[..., r:h - r, r:w - r]  # (n, C, h−2r, w−2r): what every shift can see
    kernel = torch.nn.functional.pad(target, (0, 2 * r, 0, 2 * r))  # (n, C, H, W), target at the corner
    # corr[u, v] = Σ_cij x[c, u + i, v + j] · target[c, i, j] (channels summed in frequency space);
    # shift (sy, sx) reads corr[r + sy, r + sx]
    spectrum = (torch.fft.rfft2(x) * torch.fft.rfft2(kernel).conj()).sum(1)  # (n, H, W/2+1)
    cross = torch.fft.irfft2(spectrum, s=(h, w))[:, :size, :size]  # (n, 2r+1, 2r+1)
    square = torch.nn.functional.pad((x * x).sum(1).cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # (n, H+1, W+1)
    th, tw = h - 2 * r, w - 2 * r
    box = (square[:, th:th + size, tw:tw + size] - square[:, :size, tw:tw + size]
           - square[:, th:th + size, :size] + square[:, :size, :size])  # Σ x² over each shifted window
    count = target[0].numel()
    return ((box - 2 * cross + (target * target).sum((1, 2, 3))[:, None, None]) / count).clamp(min=0)


@torch.no_grad()
def camera_shift(first, second, max_shift: int = MAX_SHIFT, chunk: int = 512) -> Shift:
    """Camera motion from `first` to `second`: frames (N, H, W, 3) uint8 or (N, C, H, W) in [-1, 1].

    Returns a `Shift` of (N,) float64 tensors. Flat frames (no texture) give dx = dy = 0.
    """
    a, b = _as_float(first), _as_float(second)
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two frame batches of one shape (N, H, W, 3) or (N, C, H, W), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    h, w = a.shape[-2:]
    r = max_shift
    if not 0 < r < min(h, w) // 2:
        raise ValueError(f"max_shift must be in 1..{min(h, w) // 2 - 1} for {h}×{w} frames, got {max_shift}")
    out = {"dx": [], "dy": [], "aligned_psnr": []}
    for start in range(0, a.shape[0], chunk):
        err = _error_surface(a[start:start + chunk], b[start:start + chunk], r)  # (n, sy, sx)
        n, size = err.shape[0], 2 * r + 1
        best = err.flatten(1).argmin(1)
        iy, ix = best // size, best % size
        rows = torch.arange(n)
        centre = err[rows, iy, ix]
        # Sub-pixel refinement where the best shift has both neighbours inside the search and
        # does not already explain the frame exactly (an exact match is a whole-pixel shift).
        exact = centre < 1e-10
        inner_x, inner_y = (ix > 0) & (ix < size - 1) & ~exact, (iy > 0) & (iy < size - 1) & ~exact
        fx = _subpixel(err[rows, iy, (ix - 1).clamp(min=0)], centre, err[rows, iy, (ix + 1).clamp(max=size - 1)])
        fy = _subpixel(err[rows, (iy - 1).clamp(min=0), ix], centre, err[rows, (iy + 1).clamp(max=size - 1), ix])
        dx = (ix - r).double() + torch.where(inner_x, fx, torch.zeros_like(fx))
        dy = (iy - r).double() + torch.where(inner_y, fy, torch.zeros_like(fy))
        # second(p) = first(p + s): the scene moved by −s, so the camera moved by +s.
        still = err.flatten(1).max(1).values - centre < 1e-10  # no texture: every shift explains it
        out["dx"].append(torch.where(still, torch.zeros_like(dx), dx))
        out["dy"].append(torch.where(still, torch.zeros_like(dy), dy))
        out["aligned_psnr"].append(10 * torch.log10(1 / centre.clamp(min=1e-10)))
    return Shift(*(torch.cat(out[k]) for k in ("dx", "dy", "aligned_psnr")))


def video_shifts(video: torch.Tensor, max_shift: int = MAX_SHIFT) -> Shift:
    """Camera motion of every transition of videos (B, C, T, H, W) in [-1, 1] → `Shift` of (B, T−1) tensors."""
    b, c, t, h, w = video.shape
    frames = video.permute(0, 2, 1, 3, 4)  # (B, T, C, H, W)
    s = camera_shift(frames[:, :-1].reshape(-1, c, h, w), frames[:, 1:].reshape(-1, c, h, w), max_shift)
    return Shift(*(v.reshape(b, t - 1) for v in (s.dx, s.dy, s.aligned_psnr)))


def motion_bins(shift: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Camera motion per transition → 0 (negative: left / up), 1 (|shift| ≤ threshold), 2 (right / down)."""
    return torch.where(shift < -threshold, 0, torch.where(shift > threshold, 2, 1)).long()
