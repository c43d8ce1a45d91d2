"""One key sequence played from every frame of a world's gallery, as `opengenie generate --keys`
plays it: how far each run of one key moves the camera, frame by frame of the gallery.

    python bench/gallery_walk.py [--model worlds/coinrun-wander] [--keys right*6,up,right*3,left*8,up,left*2]
                                 [--seed 0] [--action-guidance W] [--guidance-against still]
                                 [--broken-below DB]

The README's GIF is one such rollout from one frame; this shows what the same keys do from the
others (one rollout each, the sampler seeded as `generate --seed`). A run counts as moving when
its camera motion along the key's direction is at least 4 px (dx for ← →, dy for ↑) and none of
its frames is broken: a scene redrawn in new colours also "moves" the best-matching shift. A
frame is broken when its shift-aligned PSNR to the frame before is under the evaluation's
threshold (the real frames' 1st percentile, read from MODEL/eval/metrics.json; --broken-below).
"""

from __future__ import annotations

import argparse
import json
from itertools import groupby
from pathlib import Path

import torch

from opengenie import Genie
from opengenie.cli_args import key_presses
from opengenie.cli_world import play_frames  # the rollout `opengenie generate` writes
from opengenie.evaluation.motion import camera_shift, max_shift_for

ARROW = {"ArrowRight": ("→", "dx", 1), "ArrowLeft": ("←", "dx", -1), "ArrowUp": ("↑", "dy", -1)}
MOVED_PX = 4.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="worlds/coinrun-wander")
    p.add_argument("--keys", default="right*6,up,right*3,left*8,up,left*2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--action-guidance", type=float, default=None, help="guidance weight (default: the world's)")
    p.add_argument("--guidance-against", default=None, help="what guidance contrasts with: an action id or label, "
                   "'none' or 'mean' (default: the world's)")
    p.add_argument("--broken-below", type=float, default=None,
                   help="dB of shift-aligned PSNR under which a frame is broken (default: the world's evaluation's)")
    args = p.parse_args()
    broken_below = args.broken_below
    if broken_below is None:
        metrics = Path(args.model, "eval", "metrics.json")
        if not metrics.is_file():
            raise SystemExit(f"{metrics} is missing: give --broken-below DB or evaluate the world first")
        broken_below = json.loads(metrics.read_text())["playability"]["broken_below_db"]
    world = Genie.from_pretrained(args.model).eval().set_sampling(action_guidance=args.action_guidance,
                                                                  guidance_against=args.guidance_against)
    keys = key_presses(args.keys)
    actions = [world.config.arrow_keys[k] for k in keys]
    runs = [(key, len(list(group))) for key, group in groupby(keys)]
    reach = max_shift_for(world.config.frame_skip, world.image_size[0])
    moved, broken = [0] * len(runs), [0] * len(runs)
    names = sorted(Path(args.model, "prompts").glob("*.png"))
    if not names:
        raise SystemExit(f"{args.model} has no prompts/*.png to start from (write a gallery there with "
                         "`opengenie gallery --data EPISODES --out WORLD/prompts`)")
    print(f"{args.model}, keys {args.keys}, seed {args.seed}: camera motion of each run (px; ±{reach} a step is the "
          f"search's limit, usually a redrawn scene rather than a pan; *: a frame under {broken_below:.1f} dB)")
    print("| frame | " + " | ".join(f"{ARROW[k][0]}×{n}" for k, n in runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for path in names:
        frames = play_frames(world, str(path), actions, None, None, args.seed)[-len(actions) - 1:]  # (1 + n, H, W, 3)
        x = torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
        shift = camera_shift(x[:-1], x[1:], reach)
        cells, step = [], 0
        for i, (key, n) in enumerate(runs):
            _, axis, sign = ARROW[key]
            value = float(getattr(shift, axis)[step:step + n].sum())
            whole = bool((shift.aligned_psnr[step:step + n] >= broken_below).all())
            moved[i] += whole and sign * value >= MOVED_PX
            broken[i] += not whole
            cells.append(f"{value:+.1f}" + ("" if whole else "*"))
            step += n
        print(f"| {path.stem} | " + " | ".join(cells) + " |")
    print(f"| moved ≥ {MOVED_PX:.0f} px its way, unbroken | " + " | ".join(f"{m} of {len(names)}" for m in moved) + " |")
    print("| a frame broken | " + " | ".join(f"{b} of {len(names)}" for b in broken) + " |")


if __name__ == "__main__":
    main()
