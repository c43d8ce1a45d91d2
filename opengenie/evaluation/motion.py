"""Visible camera motion between consecutive frames, estimated from the pixels alone.

In a side-scroller the camera follows the player, so walking right slides the whole scene left
and a jump slides it down. `camera_shift` finds, for each pair of frames, the shift of the
first frame that best explains the second: a brute-force search over integer shifts of up to
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
    offsets = range(-r, r + 1)
    out = {"dx": [], "dy": [], "aligned_psnr": []}
    for start in range(0, a.shape[0], chunk):
        x, y = a[start:start + chunk], b[start:start + chunk]
        target = y[..., r:h - r, r:w - r]  # (n, C, h−2r, w−2r): what every shift can see
        # err[n, i, j]: MSE of second vs first moved so that second(p) = first(p + (sy_i, sx_j))
        err = torch.stack([torch.stack([((x[..., r + sy:h - r + sy, r + sx:w - r + sx] - target) ** 2).mean((1, 2, 3))
                                        for sx in offsets]) for sy in offsets])  # (2r+1, 2r+1, n)
        err = err.permute(2, 0, 1)  # (n, sy, sx)
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
        dx = (ix - r).double() + torch.where(inner_x, fx, torch.zeros_like(fx)).double()
        dy = (iy - r).double() + torch.where(inner_y, fy, torch.zeros_like(fy)).double()
        # second(p) = first(p + s): the scene moved by −s, so the camera moved by +s.
        still = err.flatten(1).max(1).values - centre < 1e-10  # no texture: every shift explains it
        out["dx"].append(torch.where(still, torch.zeros_like(dx), dx))
        out["dy"].append(torch.where(still, torch.zeros_like(dy), dy))
        out["aligned_psnr"].append(10 * torch.log10(1 / centre.double().clamp(min=1e-10)))
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
