"""Checks of user input and of training health, with errors a user can act on."""

from __future__ import annotations

import torch

from opengenie.config_checks import is_int, is_number  # noqa: F401 -- the checks of plain numbers, torch-free


# Inputs are expected in [-1, 1]. Small overshoot (e.g. Gaussian test noise) is tolerated;
# pixel values in [0, 255] are not.
_RANGE_LIMIT = 8.0


def check_video(video: torch.Tensor, channels: int, patch_size: int = 1,
                image_size: tuple[int, int] | None = None, min_frames: int = 1) -> None:
    """Raise a ValueError a user can act on unless `video` is (B, C, T, H, W) float in [-1, 1]."""
    expect = f"(B, {channels}, T, H, W) float in [-1, 1]"
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor video {expect}, got {type(video).__name__}")
    if video.dim() != 5:
        hint = " (add a batch axis with video[None])" if video.dim() == 4 else ""
        raise ValueError(f"expected video {expect}, got shape {tuple(video.shape)}{hint}")
    if not video.is_floating_point():
        raise ValueError(f"expected a float video {expect}, got dtype {video.dtype}; "
                         f"scale uint8 pixels with video.float() / 127.5 - 1")
    b, c, t, h, w = video.shape
    if c != channels:
        hint = " (channel-last input? use video.permute(0, 4, 1, 2, 3))" if w == channels else ""
        raise ValueError(f"expected video {expect}, got {c} channels in shape {tuple(video.shape)}{hint}")
    if t < min_frames:
        raise ValueError(f"expected at least {min_frames} frames, got shape {tuple(video.shape)}")
    if h % patch_size or w % patch_size:
        raise ValueError(f"expected video {expect} with H, W divisible by patch_size={patch_size}, "
                         f"got {tuple(video.shape)}; resize or crop the frames")
    if image_size is not None and (h, w) != tuple(image_size):
        raise ValueError(f"expected frames of size {tuple(image_size)}, got {(h, w)} in shape "
                         f"{tuple(video.shape)}; resize the frames or build the model for this size")
    lo, hi = video.min().item(), video.max().item()
    if not (-_RANGE_LIMIT <= lo and hi <= _RANGE_LIMIT) or lo != lo or hi != hi:
        raise ValueError(f"expected video values in [-1, 1], got range [{lo:.3g}, {hi:.3g}]; "
                         f"scale pixels with x / 127.5 - 1")


def check_ids(ids: torch.Tensor, size: int, name: str, shape_hint: str) -> None:
    """Raise a ValueError unless `ids` is an integer tensor with every value in [0, size)."""
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"expected {name} {shape_hint} int64, got {got}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= size):
        raise ValueError(f"{name} must lie in 0..{size - 1}, got values in [{ids.min().item()}, {ids.max().item()}]")


def check_finite(loss: torch.Tensor, parts: dict[str, torch.Tensor], step: int | None = None) -> None:
    """Raise FloatingPointError naming the step and every loss part if `loss` is NaN or inf."""
    if torch.isfinite(loss).all():
        return
    at = f" at step {step}" if step is not None else ""
    detail = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
    raise FloatingPointError(f"non-finite loss {float(loss)}{at}; parts: {detail}. "
                             f"Lower the learning rate, or train in fp32 to find the cause")
