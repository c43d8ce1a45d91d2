"""The report's images: labelled grids of frames, written as PNG.

A grid is a list of rows; each row has a label (drawn on the left) and frames
`(T, H, W, 3) uint8`, optionally with one caption per frame (drawn above it, e.g. the action
that led to the frame). Frames are enlarged by an integer factor without smoothing, so
pixels stay pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from opengenie.images import to_frames

LABEL_W, CAPTION_H, GAP = 110, 14, 2
BACKGROUND, INK = (255, 255, 255), (0, 0, 0)


def grid_image(rows: Sequence[tuple[str, np.ndarray, Sequence[str] | None]], scale: int = 2) -> Image.Image:
    """rows: (label, frames (T, H, W, 3) uint8, captions of length T or None) → one PIL image."""
    if not rows:
        raise ValueError("a grid needs at least one row")
    h, w = rows[0][1].shape[1:3]
    fh, fw = h * scale, w * scale
    cols = max(len(f) for _, f, _ in rows)
    row_h = CAPTION_H + fh + GAP
    img = Image.new("RGB", (LABEL_W + cols * (fw + GAP), len(rows) * row_h), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for r, (label, frames, captions) in enumerate(rows):
        top = r * row_h
        draw.text((4, top + CAPTION_H + fh // 2 - 6), label, fill=INK)
        for c, frame in enumerate(frames):
            left = LABEL_W + c * (fw + GAP)
            img.paste(Image.fromarray(frame).resize((fw, fh), Image.NEAREST), (left, top + CAPTION_H))
            if captions is not None and captions[c]:
                draw.text((left + 2, top + 1), captions[c], fill=INK)
    return img


def save_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray, Sequence[str] | None]], scale: int = 2) -> Path:
    """Write `grid_image(rows)` as a PNG at `path`."""
    path = Path(path)
    grid_image(rows, scale).save(path, format="PNG")
    return path


def reconstruction_rows(real: torch.Tensor, recon: torch.Tensor, count: int = 3) -> list:
    """Real clips over their reconstructions, `count` clips: videos (B, C, T, H, W) in [-1, 1]."""
    real_f, recon_f = to_frames(real[:count]), to_frames(recon[:count])  # (b, T, H, W, 3)
    rows = []
    for i in range(len(real_f)):
        rows += [(f"clip {i} real", real_f[i], None), (f"clip {i} recon", recon_f[i], None)]
    return rows


def rollout_rows(real: torch.Tensor, inferred: torch.Tensor, random: torch.Tensor, actions: torch.Tensor,
                 random_actions: torch.Tensor, count: int = 2) -> list:
    """Per clip: the real clip, its rollout with inferred actions, its rollout with random actions.

    Captions name the latent action that led into each generated frame ("a=3"); frame 0 is the
    prompt. Videos (B, C, T, H, W) in [-1, 1], actions (B, T−1).
    """
    rows = []
    for i in range(min(count, real.shape[0])):
        inf_caps = ["prompt"] + [f"a={int(a)}" for a in actions[i]]
        rnd_caps = ["prompt"] + [f"a={int(a)}" for a in random_actions[i]]
        rows += [(f"clip {i} real", to_frames(real[i]), None),
                 (f"clip {i} inferred", to_frames(inferred[i]), inf_caps),
                 (f"clip {i} random", to_frames(random[i]), rnd_caps)]
    return rows


def action_grid_rows(grid: torch.Tensor) -> list:
    """grid (A, C, 1 + k, H, W): row a is the prompt followed by k frames of latent action a."""
    frames = to_frames(grid)  # (A, 1 + k, H, W, 3)
    k = frames.shape[1] - 1
    return [(f"action {a}", frames[a], ["prompt"] + [f"a={a}"] * k) for a in range(frames.shape[0])]
