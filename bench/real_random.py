"""The real game under random keys, against copying the prompt: the reference for the evaluation's
"random actions vs copy the prompt" row.

    python bench/real_random.py [--eval worlds/coinrun-wander/eval/metrics.json] [--data data/eval-explore]
                                [--seeds 3] [--keys all|arrows]

`opengenie eval` asks of a world that a rollout with random latent actions be no worse than
repeating the prompt. This replays the real CoinRun from the start of each of the evaluation's
clips (the same clips, from its metrics.json), presses uniformly random keys (`all`: the 15
procgen keys, the paper's random policy; `arrows`: LEFT, RIGHT, UP, none), one per world step of
`frame_skip` game frames, and compares each frame with the recorded clip, beside the real prompt
frame repeated. Prints, per frame (frame 1 is the prompt), PSNR of the random-key game and of
the copy against the recorded frames, the share of random-key frames identical to the clip's,
and copy − random (dB) with its bootstrap 95 % interval.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from opengenie.data.coinrun import level_env
from opengenie.data.episodes import load_episode
from opengenie.data.keys import LEFT, NOOP, RIGHT, UP
from opengenie.evaluation.uncertainty import bootstrap_ci

NUM_KEYS = 15


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 frames (..., H, W, 3). Identical frames (the game often
    shows the same frame whatever the key, for a step or two) count as 48.1 dB, one grey level
    of error everywhere, rather than as infinity, which would swamp the mean."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(-3, -2, -1))
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", default="worlds/coinrun-wander/eval/metrics.json")
    p.add_argument("--data", default="data/eval-explore")
    p.add_argument("--seeds", type=int, default=3, help="random key sequences per clip")
    p.add_argument("--keys", default="all", choices=["all", "arrows"])
    args = p.parse_args()
    settings = json.loads(Path(args.eval).read_text())["settings"]
    manifest = json.loads((Path(args.data) / "manifest.json").read_text())["settings"]
    skip, frames = settings["frame_skip"], settings["frames"]
    keys = np.arange(NUM_KEYS) if args.keys == "all" else np.array([LEFT, RIGHT, UP, NOOP])
    rng = np.random.default_rng(0)
    real_random, copy, same = [], [], []
    for name, start in settings["clips"]:
        ep = load_episode(Path(args.data) / name)
        recorded = ep["frames"][start:start + skip * frames:skip]  # (T, H, W, 3)
        env = level_env(int(ep["level_seed"]), manifest["difficulty"], int(manifest["seed"]))
        for t in range(start):
            env.act(ep["actions"][t:t + 1].astype(np.int64))
        state = env.get_state()
        for _ in range(args.seeds):
            env.set_state(state)
            played = [env.observe()[1]["rgb"][0]]
            for _ in range(frames - 1):
                key = rng.choice(keys)
                for _ in range(skip):
                    env.act(np.array([key]))
                played.append(env.observe()[1]["rgb"][0])
            same.append((np.stack(played)[1:] == recorded[1:]).all(axis=(-3, -2, -1)))
            real_random.append(psnr(np.stack(played)[1:], recorded[1:]))
            copy.append(psnr(np.repeat(recorded[:1], frames - 1, axis=0), recorded[1:]))
        env.close()
    real_random, copy, same = np.stack(real_random), np.stack(copy), np.stack(same)  # (clips · seeds, T − 1)
    print(f"{len(settings['clips'])} clips of {args.data}, {args.seeds} random key sequences each "
          f"({args.keys} keys), a world step = {skip} game frames")
    print("| frame | real game, random keys (dB) | identical to the clip | copy the prompt (dB) | copy − random (dB) [95 %] |")
    print("|---|---|---|---|---|")
    for t in range(frames - 1):
        gap = torch.from_numpy(copy[:, t] - real_random[:, t])
        lo, hi = bootstrap_ci(gap)
        print(f"| {t + 2} | {real_random[:, t].mean():.2f} | {same[:, t].mean():.0%} | {copy[:, t].mean():.2f} | "
              f"{float(gap.mean()):.2f} [{lo:.2f}, {hi:.2f}] |")


if __name__ == "__main__":
    main()
