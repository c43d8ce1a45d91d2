"""Held-out PSNR of tokenizers side by side, on the clips `opengenie eval` scores a world on.

    python bench/tokenizer_psnr.py TOKENIZER [TOKENIZER ...] [--data data/eval-explore]
                                   [--split all] [--frames 16] [--frame-skip 4] [--num-clips 256] [--window N]

Each TOKENIZER is a stage-1 or stage-2 checkpoint or a world dir. The clips are the evaluation's
(same data, split `all`, seed, clip count and frame step), so the first tokenizer of a world
reproduces its report's "tokenizer (ceiling)" row. Clips are coded in windows of `--window`
frames (default: the tokenizer's max_frames, as the evaluation does; a tokenizer trained on
shorter clips is fairly scored at its training length). Prints, per tokenizer, mean PSNR over
clips (each clip the mean of its frames) with its bootstrap 95 % interval, the grid of tokens
a frame and the bits a frame carries.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from opengenie.evaluation.image_metrics import psnr
from opengenie.evaluation.report import _load_clips
from opengenie.evaluation.rollout import _windows
from opengenie.evaluation.uncertainty import bootstrap_ci
from opengenie.training.checkpoints import load_tokenizer


@torch.no_grad()
def reconstruct(tokenizer, video: torch.Tensor, window: int) -> torch.Tensor:
    """video (B, C, T, H, W) → the tokenizer's reconstruction, windows of `window` frames coded apart."""
    return torch.cat([tokenizer.decode_ids(tokenizer.tokenize(video[:, :, a:b])[1])
                      for a, b in _windows(video.shape[2], window, 0)], dim=2).clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizers", nargs="+")
    parser.add_argument("--data", default="data/eval-explore")
    parser.add_argument("--split", default="all", choices=["train", "val", "test", "all"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--frame-skip", type=int, default=4)
    parser.add_argument("--num-clips", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for path in args.tokenizers:
        tokenizer = load_tokenizer(path).eval()
        config = tokenizer.config
        split = None if args.split == "all" else args.split
        _, clips = _load_clips(Path(args.data), split, args.frames, args.num_clips, args.seed, config.image_size,
                               frame_skip=args.frame_skip)
        window = args.window or config.max_frames
        per_clip = []
        for start in range(0, len(clips), args.batch_size):
            video = torch.stack([c["video"] for c in clips[start:start + args.batch_size]])
            per_clip.append(psnr(reconstruct(tokenizer, video, window), video).mean(1))
        values = torch.cat(per_clip)
        low, high = bootstrap_ci(values)
        grid = tuple(s // config.patch_size for s in config.image_size)
        bits = math.prod(grid) * math.log2(config.codebook_size)
        print(f"{path}: {values.mean():.2f} dB [{low:.2f}, {high:.2f}] over {len(values)} clips; patch "
              f"{config.patch_size}, {grid[0]}x{grid[1]} tokens of {config.codebook_size} codes ({bits:.0f} bits a "
              f"frame), windows of {window} frames")


if __name__ == "__main__":
    main()
