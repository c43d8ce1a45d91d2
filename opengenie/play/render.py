"""Rollouts as pictures people can look at: frame stacks, the action grid, GIF and MP4 files.

    frames = rollout_frames(world, "level.png", [0, 3, 3, 1])   # (T0 + 4, H, W, 3) uint8
    write_video(frames, "rollout.gif", fps=8, scale=4)
    action_grid(world, "level.png", frames_per_action=6).save("actions.png")

Frames are upscaled by whole factors with nearest-neighbour sampling so that each model pixel
stays a crisp square: a 64×64 world is unreadable at its native size and blurry when smoothed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from opengenie.genie import Genie
from opengenie.images import ImageLike, load_frames, to_frames, to_video

# Layout of `action_grid`, in output pixels.
GRID_PAD = 4  # gap between tiles and around the edge
GRID_LABEL_W = 84  # the "action i" column
GRID_HEADER_H = 20  # the "prompt / t+1 / ..." row


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by a whole factor: (..., H, W, 3) → (..., H*scale, W*scale, 3)."""
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, got {scale!r}")
    if scale == 1:
        return frames
    return frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def rollout_frames(world: Genie, prompt: ImageLike | Sequence[ImageLike], actions: Sequence[int],
                   maskgit_steps: int | None = None, temperature: float | None = None, seed: int | None = None,
                   use_cache: bool = True) -> np.ndarray:
    """Play `actions` from `prompt` (one image or a list of them) → frames (T0 + n, H, W, 3) uint8.

    The first T0 frames are the world's reconstruction of the prompt (at most max_frames - 1 of
    them, the context the dynamics model can hold); then one generated frame per action.
    """
    actions = [int(a) for a in actions]
    bad = [a for a in actions if not 0 <= a < world.num_actions]
    if bad:
        raise ValueError(f"actions must lie in 0..{world.num_actions - 1} for this world, got {bad}")
    video = to_video(load_frames(prompt, world.image_size))  # (1, 3, T0, H, W)
    out = world.rollout(video, torch.tensor([actions], dtype=torch.long).reshape(1, len(actions)),
                        maskgit_steps=maskgit_steps, temperature=temperature, seed=seed, use_cache=use_cache)
    return to_frames(out[0])


def grid_size(num_actions: int, frames_per_action: int, image_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """(width, height) in pixels of the `action_grid` picture."""
    h, w = image_size
    cols = frames_per_action + 1  # the prompt, then the generated frames
    return (GRID_LABEL_W + cols * (w * scale + GRID_PAD) + GRID_PAD,
            GRID_HEADER_H + num_actions * (h * scale + GRID_PAD) + GRID_PAD)


def _font(size: int) -> ImageFont.ImageFont:
    try:  # Pillow >= 10.1 ships a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def action_grid(world: Genie, prompt: ImageLike | Sequence[ImageLike], frames_per_action: int = 6,
                maskgit_steps: int | None = None, temperature: float | None = None, seed: int | None = 0,
                scale: int = 2, use_cache: bool = True) -> Image.Image:
    """Each latent action held for `frames_per_action` frames from the same prompt, as a picture.

    Row i shows action i repeated: its first tile is the (reconstructed) last prompt frame, then
    the generated frames. All rows are generated together as one batch. Size: `grid_size(...)`.
    """
    if frames_per_action < 1:
        raise ValueError(f"frames_per_action must be >= 1, got {frames_per_action}")
    n = world.num_actions
    video = to_video(load_frames(prompt, world.image_size)).repeat(n, 1, 1, 1, 1)  # (N, 3, T0, H, W)
    actions = torch.arange(n)[:, None].repeat(1, frames_per_action)  # (N, k): row i holds action i
    out = world.rollout(video, actions, maskgit_steps=maskgit_steps, temperature=temperature, seed=seed,
                        use_cache=use_cache)
    frames = upscale(to_frames(out[:, :, -(frames_per_action + 1):]), scale)  # (N, k+1, H*s, W*s, 3)

    width, height = grid_size(n, frames_per_action, world.image_size, scale)
    tile_h, tile_w = frames.shape[2:4]
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    for j in range(frames_per_action + 1):
        x = GRID_LABEL_W + GRID_PAD + j * (tile_w + GRID_PAD)
        draw.text((x, 3), "prompt" if j == 0 else f"t+{j}", fill=(200, 200, 200), font=font)
    labels = world.config.action_labels  # measured by `opengenie label`, if the world was labelled
    for i in range(n):
        y = GRID_HEADER_H + GRID_PAD + i * (tile_h + GRID_PAD)
        draw.text((GRID_PAD, y + tile_h // 2 - 8), f"action {i}", fill=(240, 240, 240), font=font)
        if labels:
            draw.text((GRID_PAD, y + tile_h // 2 + 8), labels[i], fill=(170, 200, 240), font=_font(12))
        for j in range(frames_per_action + 1):
            x = GRID_LABEL_W + GRID_PAD + j * (tile_w + GRID_PAD)
            canvas.paste(Image.fromarray(frames[i, j]), (x, y))
    return canvas


def caption_frames(frames: np.ndarray, captions: Sequence[str], height: int = 20) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 with `captions[t]` written in a dark strip under frame t →
    (T, H + height, W, 3) uint8 (upscale first: the text does not scale with the frame)."""
    frames = np.asarray(frames)
    if len(captions) != len(frames):
        raise ValueError(f"expected one caption per frame, got {len(captions)} for {len(frames)} frames")
    out = np.empty((len(frames), frames.shape[1] + height, *frames.shape[2:]), dtype=np.uint8)
    font = _font(min(14, height - 4))
    for t, (frame, text) in enumerate(zip(frames, captions)):
        canvas = Image.new("RGB", (frame.shape[1], frame.shape[0] + height), (24, 24, 28))
        canvas.paste(Image.fromarray(frame), (0, 0))
        ImageDraw.Draw(canvas).text((4, frame.shape[0] + 2), text, fill=(230, 230, 230), font=font)
        out[t] = np.asarray(canvas)
    return out


def write_video(frames: np.ndarray, path: str | Path, fps: float = 8, scale: int = 1) -> Path:
    """Write frames (T, H, W, 3) uint8 as an animated GIF (Pillow) or an H.264 MP4 (PyAV),
    chosen by the suffix of `path`; `scale` upscales with nearest-neighbour first.

    GIF stores identical consecutive frames once with a longer duration (Pillow's encoder).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected frames (T, H, W, 3) uint8 with T >= 1, got {frames.shape} {frames.dtype}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = upscale(frames, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
    elif suffix == ".mp4":
        _write_mp4(frames, path, fps)
    else:
        raise ValueError(f"cannot write {path.name!r}: use a .gif or .mp4 file name")
    return path


def gif_bytes(frames: np.ndarray, fps: float = 8) -> bytes:
    """Frames (T, H, W, 3) uint8 → an endlessly looping animated GIF file, as bytes."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buf.getvalue()


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    try:
        import av
    except ImportError as err:
        raise ValueError("writing MP4 needs PyAV: pip install 'opengenie[video]' (or write a .gif)") from err
    from fractions import Fraction

    # yuv420p halves the chroma resolution, so H.264 needs even sides: pad by edge replication.
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}  # near-lossless: pixel art smears at the default crf 23
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
