"""Why random latent actions lose to copying the prompt at t = 1–4: which random actions.

    python bench/random_codes.py [--model worlds/coinrun-wander] [--data data/eval-explore]
                                 [--eval worlds/coinrun-wander/eval/metrics.json] [--clips 96]

`opengenie eval` draws random actions uniformly from the latent codebook (Genie's ΔtPSNR). But
the codes are not used uniformly by the game: the action model gives some codes to most
transitions and others (jumps, falls) to few. This rolls the world out from the evaluation's
clips (the first `--clips` of its metrics.json, at its frame skip) with

    inferred      the actions the action model infers from the real clip
    uniform       codes drawn uniformly (the evaluation's random actions)
    empirical     codes drawn from their frequency among the inferred actions of these clips
    copy          the reconstructed prompt repeated (the baseline)

and prints PSNR per step against the real clip, copy − each (dB), the code frequencies, and per
code the PSNR at t = 1 of holding it (what one random draw of that code costs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from opengenie import Genie
from opengenie.data.episodes import load_episode
from opengenie.evaluation.image_metrics import psnr
from opengenie.evaluation.rollout import infer_actions, play, random_actions


def clips(data: Path, settings: dict, count: int) -> torch.Tensor:
    """The evaluation's clips: (N, C, T, H, W) in [-1, 1]."""
    skip, frames = settings["frame_skip"], settings["frames"]
    out = []
    for name, start in settings["clips"][:count]:
        x = load_episode(data / name)["frames"][start:start + skip * frames:skip]  # (T, H, W, 3)
        out.append(torch.from_numpy(x.copy()).permute(3, 0, 1, 2).float() / 127.5 - 1)
    return torch.stack(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="worlds/coinrun-wander")
    p.add_argument("--data", default="data/eval-explore")
    p.add_argument("--eval", default="worlds/coinrun-wander/eval/metrics.json")
    p.add_argument("--clips", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    world = Genie.from_pretrained(args.model).eval()
    settings = json.loads(Path(args.eval).read_text())["settings"]
    video = clips(Path(args.data), settings, args.clips)  # (N, C, T, H, W)
    n, steps, a = video.shape[0], video.shape[2] - 1, world.num_actions
    gen = torch.Generator().manual_seed(0)
    inferred = torch.cat([infer_actions(world, video[i:i + args.batch_size])
                          for i in range(0, n, args.batch_size)])  # (N, T − 1)
    freq = torch.bincount(inferred.flatten(), minlength=a).double() / inferred.numel()
    actions = {"inferred": inferred, "uniform": random_actions(world, n, steps, gen),
               "empirical": torch.multinomial(freq, n * steps, replacement=True, generator=gen).view(n, steps)}
    actions.update({f"hold {c}": torch.full((n, steps), c) for c in range(a)})
    scores = {}
    for name, acts in actions.items():
        parts = [play(world, video[i:i + args.batch_size], acts[i:i + args.batch_size], seed=j)
                 for j, i in enumerate(range(0, n, args.batch_size))]
        rollout = torch.cat(parts)  # (N, C, T, H, W), the reconstructed prompt first
        scores[name] = psnr(rollout[:, :, 1:], video[:, :, 1:])  # (N, T − 1)
        if name == "inferred":
            copy = rollout[:, :, :1].expand(-1, -1, steps, -1, -1)
            scores["copy"] = psnr(copy, video[:, :, 1:])
    print(f"{n} clips of {args.data} ({args.model}), {steps} steps, frame skip {settings['frame_skip']}")
    print("code frequency among inferred actions: " + ", ".join(f"{c}: {f:.1%}" for c, f in enumerate(freq.tolist())))
    print("| t | copy (dB) | inferred | uniform | empirical | copy − uniform | copy − empirical |")
    print("|---|---|---|---|---|---|---|")
    mean = {k: v.mean(0) for k, v in scores.items()}
    for t in range(steps):
        c = mean["copy"][t]
        print(f"| {t + 1} | {c:.2f} | {mean['inferred'][t]:.2f} | {mean['uniform'][t]:.2f} | {mean['empirical'][t]:.2f} "
              f"| {c - mean['uniform'][t]:+.2f} | {c - mean['empirical'][t]:+.2f} |")
    print("per code, held from the prompt: PSNR at t = 1 and t = 4 against the real clip (copy "
          f"{mean['copy'][0]:.2f} / {mean['copy'][3]:.2f} dB)")
    for c in range(a):
        m = mean[f"hold {c}"]
        print(f"  code {c} ({world.config.action_labels[c] if world.config.action_labels else c}, used {freq[c]:.1%}): "
              f"{m[0]:.2f} / {m[3]:.2f} dB")


if __name__ == "__main__":
    main()
