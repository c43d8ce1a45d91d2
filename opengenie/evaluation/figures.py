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


# --- charts: drawn with PIL so the report needs no plotting library ----------------------------

COLOURS = [(31, 119, 180), (214, 39, 40), (127, 127, 127), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (140, 86, 75), (227, 119, 194), (23, 190, 207), (188, 189, 34), (0, 0, 0), (90, 90, 200)]


class _Axes:
    """A plotting area of `size` px mapping data limits to pixels, with ticks, labels and a legend."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], xlim, ylim) -> None:
        self.draw, self.box, self.xlim, self.ylim = draw, box, xlim, ylim

    def px(self, x: float, y: float) -> tuple[float, float]:
        l, t, r, b = self.box
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        return l + (x - x0) / (x1 - x0 or 1) * (r - l), b - (y - y0) / (y1 - y0 or 1) * (b - t)

    def frame(self, xlabel: str, ylabel: str, title: str, ticks: int = 5, xticks: int | None = None) -> None:
        l, t, r, b = self.box
        self.draw.rectangle(self.box, outline=INK)
        for axis in (0, 1):
            count = (xticks or ticks) if axis == 0 else ticks
            for i in range(count + 1):
                lo, hi = (self.xlim, self.ylim)[axis]
                v = lo + (hi - lo) * i / count
                if axis == 0:
                    x, _ = self.px(v, 0)
                    self.draw.line([(x, b), (x, b + 4)], fill=INK)
                    self.draw.text((x - 10, b + 6), f"{v:.3g}", fill=INK)
                else:
                    _, y = self.px(0, v)
                    self.draw.line([(l - 4, y), (l, y)], fill=INK)
                    self.draw.text((l - 44, y - 6), f"{v:.3g}", fill=INK)
        self.draw.text(((l + r) // 2 - 4 * len(xlabel) // 2 * 1, b + 22), xlabel, fill=INK)
        self.draw.text((4, t - 16), ylabel, fill=INK)
        self.draw.text((l, 6), title, fill=INK)


def _limits(values, pad: float = 0.05) -> tuple[float, float]:
    finite = [v for v in values if v is not None and v == v and abs(v) != float("inf")]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = (hi - lo) or 1.0
    return lo - pad * span, hi + pad * span


def psnr_chart(metrics: dict, size: tuple[int, int] = (640, 380)) -> Image.Image:
    """PSNR against the real clip per frame t for each video (inferred, random, copy, ceiling), with 95 % bands."""
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    series = {k: metrics["videos"][k]["psnr_per_frame"] for k in ("reconstruction", "copy", "inferred", "random")}
    names = {"reconstruction": "tokenizer (ceiling)", "copy": "copy the prompt", "inferred": "inferred actions",
             "random": "random actions"}
    frames = len(series["inferred"]["mean"])
    values = [v for s in series.values() for part in (s["ci95"][0], s["ci95"][1]) for v in part[1:]]
    ax = _Axes(draw, (60, 30, size[0] - 170, size[1] - 40), (1, frames - 1), _limits(values))
    ax.frame("frame t", "PSNR (dB)", "PSNR per frame (95% interval over clips)", xticks=max(1, frames - 2))
    for i, (key, s) in enumerate(series.items()):  # translucent bands, so overlapping ones stay visible
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        band = [ax.px(t, s["ci95"][1][t]) for t in range(1, frames)] + \
               [ax.px(t, s["ci95"][0][t]) for t in reversed(range(1, frames))]
        ImageDraw.Draw(layer).polygon(band, fill=(*COLOURS[i], 48))
        img.paste(Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB"))
    for i, (key, s) in enumerate(series.items()):
        draw.line([ax.px(t, s["mean"][t]) for t in range(1, frames)], fill=COLOURS[i], width=2)
        draw.line([(size[0] - 160, 40 + 16 * i), (size[0] - 140, 40 + 16 * i)], fill=COLOURS[i], width=3)
        draw.text((size[0] - 135, 34 + 16 * i), names[key], fill=INK)
    return img


def motion_chart(play: dict, size: tuple[int, int] = (520, 440)) -> Image.Image:
    """Each latent action's mean k-step camera displacement (arrows from the origin, up is up)
    beside each real key's from the same states (dashed grey)."""
    img = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    rows = [(str(r["action"]), r, COLOURS[i % len(COLOURS)], False) for i, r in enumerate(play["actions"])]
    rows += [(r["action"], r, (120, 120, 120), True) for r in (play.get("real") or [])]
    reach = max([2.0] + [max(abs(r["dx_total"]), abs(r["dy_total"])) for _, r, _, _ in rows]) * 1.15
    ax = _Axes(draw, (60, 30, size[0] - 20, size[1] - 40), (-reach, reach), (-reach, reach))
    ax.frame("camera dx (px, right +)", "camera up (px)",
             f"camera motion over {play['steps']} held steps, {play['prompts']} prompts")
    origin = ax.px(0, 0)
    for name, r, colour, real in rows:
        end = ax.px(r["dx_total"], -r["dy_total"])  # image dy < 0 is up: plot up as up
        if real:
            n = 12
            for i in range(0, n, 2):
                a = (origin[0] + (end[0] - origin[0]) * i / n, origin[1] + (end[1] - origin[1]) * i / n)
                b = (origin[0] + (end[0] - origin[0]) * (i + 1) / n, origin[1] + (end[1] - origin[1]) * (i + 1) / n)
                draw.line([a, b], fill=colour, width=2)
        else:
            draw.line([origin, end], fill=colour, width=2)
        draw.ellipse([end[0] - 3, end[1] - 3, end[0] + 3, end[1] + 3], fill=colour)
        draw.text((end[0] + 4, end[1] - 12), name if real else f"a={name}", fill=colour)
    return img
