"""`opengenie demo`: the tokenizer end to end on real CoinRun frames, in about a minute.

Plays a few CoinRun levels with a random policy (procgen), trains the tiny tokenizer on their
clips, then tokenizes and reconstructs held-out clips and writes a comparison image:
real frames on top, their reconstructions from discrete tokens below.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from opengenie import presets
from opengenie.images import to_frames
from opengenie.tokenizer import VideoTokenizer


def coinrun_clips(levels: range, steps: int, frames: int) -> torch.Tensor:
    """Clips (N, 3, frames, 64, 64) in [-1, 1] cut from random-policy CoinRun levels."""
    from opengenie.data.coinrun import rollout_level

    clips = []
    for level in levels:
        video = rollout_level(level, steps)["frames"]  # (steps, 64, 64, 3) uint8
        for start in range(0, steps - frames + 1, frames):
            clips.append(video[start:start + frames])
    video = torch.from_numpy(np.stack(clips)).float() / 127.5 - 1  # (N, T, H, W, 3)
    return video.permute(0, 4, 1, 2, 3).contiguous()


def comparison_image(real: torch.Tensor, recon: torch.Tensor, scale: int = 3) -> Image.Image:
    """Rows: real frames, then reconstructions, for each clip (C, T, H, W); nearest-neighbour ×scale."""
    rows = []
    for r, g in zip(real, recon):
        rows += [np.concatenate(list(to_frames(r)), axis=1), np.concatenate(list(to_frames(g)), axis=1)]
    grid = np.concatenate(rows, axis=0)  # (2·N·H, T·W, 3)
    img = Image.fromarray(grid)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def run_demo(out: str | Path = "out/demo", steps: int = 300, seed: int = 0, batch_size: int = 8) -> dict:
    """Train the tiny tokenizer on CoinRun for `steps` steps and write `reconstruction.png`."""
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = presets.tiny().tokenizer
    frames = cfg.max_frames
    # Many short levels rather than a few long ones: CoinRun's backgrounds differ per level, and
    # a tokenizer that has seen few of them cannot draw a held-out level's.
    print("playing CoinRun levels 0-47 (train) and 1000-1001 (held out) with a random policy ...")
    train = coinrun_clips(range(48), 64, frames)
    held_out = coinrun_clips(range(1000, 1002), 2 * frames, frames)
    tokenizer = VideoTokenizer(cfg)
    opt = torch.optim.AdamW(tokenizer.parameters(), lr=2e-3, weight_decay=0.0)
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="training the tiny tokenizer")
    for step in bar:
        batch = train[torch.randint(0, len(train), (batch_size,))]
        loss, parts = tokenizer(batch)  # fp32: at tiny widths bf16 autocast is slower on CPU
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{parts.recon.item():.4f}", codes=f"{parts.perplexity.item():.0f}")
    tokenizer.eval()
    with torch.no_grad():
        codes, ids = tokenizer.tokenize(held_out)
        recon = tokenizer.decode_ids(ids).clamp(-1, 1)
    mse = torch.mean((recon - held_out) ** 2).item()
    psnr = 10 * np.log10(4.0 / mse)  # values span 2, so peak² = 4
    comparison_image(held_out[:2], recon[:2]).save(out / "reconstruction.png")
    result = {"train_seconds": round(time.perf_counter() - start, 1), "held_out_psnr_db": round(psnr, 2),
              "tokens_per_frame": int(ids[0, 0].numel()), "codes_used": int(ids.unique().numel()),
              "image": str(out / "reconstruction.png")}
    print(f"held-out CoinRun levels: PSNR {psnr:.2f} dB with {result['tokens_per_frame']} tokens per frame "
          f"from a codebook of {cfg.codebook_size} ({result['codes_used']} in use)")
    print(f"wrote {result['image']} (top: real, bottom: reconstructed from tokens)")
    return result
