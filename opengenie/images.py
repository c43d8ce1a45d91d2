"""Frames between people and models: images in, `(H, W, 3)` uint8 out.

A person hands over files, PIL images or arrays of any size; models take videos
`(B, C, T, H, W)` float in [-1, 1].
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image, UnidentifiedImageError

ImageLike = Any  # str | Path | bytes | PIL.Image.Image | np.ndarray (H, W, 3) or (T, H, W, 3) uint8


def _open(item: ImageLike) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    try:
        if isinstance(item, (bytes, bytearray)):
            return Image.open(io.BytesIO(item))
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"prompt image {str(path)!r} does not exist")
            return Image.open(path)
    except UnidentifiedImageError as err:
        raise ValueError(f"not an image PIL can read: {item!r:.80}") from err
    raise ValueError(f"expected an image (path, bytes, PIL image or uint8 array), got {type(item).__name__}")


def _resize(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect, then resize: (H, W, 3) uint8."""
    img = img.convert("RGB")
    h, w = size
    scale = max(w / img.width, h / img.height)
    rw, rh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    img = img.resize((rw, rh), Image.BICUBIC if scale > 1 else Image.BOX)
    left, top = (rw - w) // 2, (rh - h) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)), dtype=np.uint8)


def load_frames(prompt: ImageLike | Sequence[ImageLike], size: tuple[int, int]) -> np.ndarray:
    """One or more images → frames (T, H, W, 3) uint8 at `size` (H, W)."""
    if isinstance(prompt, np.ndarray):
        arr = prompt
        if arr.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got dtype {arr.dtype}; convert with "
                             f"(x * 255).astype(np.uint8) or pass an image file")
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"expected an image array (H, W, 3) or frames (T, H, W, 3), got {arr.shape}")
        return np.stack([_resize(Image.fromarray(f.squeeze(-1) if f.shape[-1] == 1 else f), size) for f in arr])
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise ValueError("the prompt holds no image")
        return np.concatenate([load_frames(p, size) for p in prompt])
    return _resize(_open(prompt), size)[None]


def to_video(frames: np.ndarray) -> torch.Tensor:
    """frames (T, H, W, 3) uint8 → video (1, 3, T, H, W) float in [-1, 1]."""
    video = torch.from_numpy(np.array(frames, dtype=np.uint8)).float() / 127.5 - 1  # a writable copy
    return rearrange(video, "t h w c -> 1 c t h w")


def to_frames(video: torch.Tensor) -> np.ndarray:
    """video (C, T, H, W) or (B, C, T, H, W) float in [-1, 1] → (T, H, W, 3) or (B, T, H, W, 3) uint8."""
    pixels = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return rearrange(pixels, "... c t h w -> ... t h w c").numpy()
