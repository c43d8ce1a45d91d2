"""One key sequence played from every frame of a world's gallery, as `opengenie generate --keys`
plays it: how far each run of one key moves the camera, frame by frame of the gallery.

    python bench/gallery_walk.py [--model worlds/coinrun-wander] [--keys right*6,up,right*3,left*8,up,left*2]
                                 [--seed 0] [--action-guidance W] [--guidance-against still]
                                 [--broken-below DB] [--real data/gallery]

The README's GIF is one such rollout from one frame; this shows what the same keys do from the
others (one rollout each, the sampler seeded as `generate --seed`). A run counts as moving when
its camera motion along the key's direction is at least 4 px (dx for ← →, dy for ↑) and none of
its frames is broken: a scene redrawn in new colours also "moves" the best-matching shift. A
frame is broken when its shift-aligned PSNR to the frame before is under the evaluation's
threshold (the real frames' 1st percentile, read from MODEL/eval/metrics.json; --broken-below).

With --real EPISODES (the CoinRun episodes the gallery was drawn from, docs/play.md), the real
game is replayed to each gallery frame's state and played through the same keys, one world step
of the world's frame skip a key, and measured the same way: the baseline the world's counts are
read against (the game is deterministic, so one run a frame; an episode ended on the way by the
coin or a death stops its camera there).
"""

from __future__ import annotations

import argparse
import json
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from opengenie import Genie
from opengenie.cli_args import key_presses
from opengenie.cli_world import play_frames  # the rollout `opengenie generate` writes
from opengenie.data import load_episode, read_manifest
from opengenie.evaluation.gallery import ARROWS, REFERENCE_FILE
from opengenie.evaluation.playability import COINRUN_KEYS, coinrun_play, episode_state
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
    p.add_argument("--real", default=None, metavar="EPISODES",
                   help="the CoinRun episodes the gallery was drawn from: play the real game through the same keys too")
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
    real_states = gallery_states(args.real, Path(args.model, "prompts"), names) if args.real else None
    real_moved, real_keys = [0] * len(runs), [COINRUN_KEYS[ARROWS[k]] for k in keys]  # the procgen keys
    for path in names:
        frames = play_frames(world, str(path), actions, None, None, args.seed)[-len(actions) - 1:]  # (1 + n, H, W, 3)
        cells = run_motion(frames, runs, reach, broken_below)
        for i, (value, whole, moves) in enumerate(cells):
            moved[i] += moves
            broken[i] += not whole
        row = [f"{value:+.1f}" + ("" if whole else "*") for value, whole, _ in cells]
        if real_states is not None:
            real, _ = coinrun_play(real_states[path.stem], real_keys, world.config.frame_skip)
            real_cells = run_motion(real.numpy(), runs, reach, broken_below)
            for i, (_, _, moves) in enumerate(real_cells):
                real_moved[i] += moves
            row = [f"{w} ({value:+.1f})" for w, (value, _, _) in zip(row, real_cells)]
        print(f"| {path.stem} | " + " | ".join(row) + " |")
    print(f"| moved ≥ {MOVED_PX:.0f} px its way, unbroken | " + " | ".join(f"{m} of {len(names)}" for m in moved) + " |")
    print("| a frame broken | " + " | ".join(f"{b} of {len(names)}" for b in broken) + " |")
    if real_states is not None:
        print("| the real game, the same keys (in brackets above): moved | "
              + " | ".join(f"{m} of {len(names)}" for m in real_moved) + " |")


def run_motion(frames, runs, reach: int, broken_below: float) -> list[tuple[float, bool, bool]]:
    """Per run of one key: its camera motion along the key's direction (px), whether none of its
    frames is broken, and whether it moved ≥ MOVED_PX the key's way unbroken. frames: (1 + n, H, W, 3) uint8."""
    x = torch.as_tensor(frames.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
    shift = camera_shift(x[:-1], x[1:], reach)
    cells, step = [], 0
    for key, n in runs:
        _, axis, sign = ARROW[key]
        value = float(getattr(shift, axis)[step:step + n].sum())
        whole = bool((shift.aligned_psnr[step:step + n] >= broken_below).all())
        cells.append((value, whole, whole and sign * value >= MOVED_PX))
        step += n
    return cells


def gallery_states(episodes: str, prompts: Path, names: list[Path]) -> dict[str, dict]:
    """The recorded CoinRun state of every gallery frame, from the episodes it was drawn from
    (levels and frames in prompts/real.json), checked to be the very frame of the gallery."""
    reference = json.loads((prompts / REFERENCE_FILE).read_text())
    manifest = read_manifest(episodes)
    if manifest is None or manifest.get("source") != "coinrun":
        raise SystemExit(f"{episodes} is not a CoinRun dataset (no manifest.json saying source: coinrun)")
    settings = manifest["settings"]
    states = {}
    for path in names:
        prompt = reference["prompts"].get(path.stem)
        episode = Path(episodes, f"level_{prompt['level_seed']:06d}.npz") if prompt else None
        if episode is None or not episode.is_file():
            raise SystemExit(f"{path.stem}: no recorded episode for it in {episodes} (see docs/play.md for the gallery's data)")
        state = episode_state(load_episode(episode), prompt["start"], settings)
        if not (np.asarray(Image.open(path).convert("RGB")) == state["frame"]).all():
            raise SystemExit(f"{path.stem}: frame {prompt['start']} of {episode} is not the gallery's frame: "
                             f"{episodes} is not the data the gallery was drawn from")
        states[path.stem] = state
    return states


if __name__ == "__main__":
    main()
