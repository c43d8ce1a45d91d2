"""How far each CoinRun policy travels: the share of transitions with visible sideways camera
motion (and moving left) and how far into the level the agent gets (the data the latent actions
can learn from).

    python bench/policies.py --levels 20 --steps 400

For each policy (`opengenie data coinrun --policy`): the fraction of transitions whose camera
moves more than 0.5 px sideways / vertically (estimated from the frames, `evaluation.motion`),
and per level the furthest the camera gets right of where it started (px, summed shifts within
one life of the agent), as median and 90th percentile over levels.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from opengenie.data.coinrun import POLICIES, rollout_level
from opengenie.evaluation.motion import camera_shift


def travel(policy: str, levels: range, steps: int, seed: int) -> dict:
    moved_x, moved_left, moved_y, furthest, solved = [], [], [], [], []
    for level in levels:
        ep = rollout_level(level, steps, "hard", seed, policy)
        s = camera_shift(ep["frames"][:-1], ep["frames"][1:])
        dx = s.dx.numpy()
        dx[ep["dones"][:-1]] = 0  # a restart jumps back to the start; not motion
        moved_x.append(np.abs(dx) > 0.5)
        moved_left.append(dx < -0.5)
        moved_y.append(np.abs(s.dy.numpy()) > 0.5)
        life = np.cumsum(ep["dones"][:-1])  # which life each transition belongs to (a restart begins one)
        best = max(np.cumsum(dx[life == k]).max(initial=0) for k in np.unique(life))
        furthest.append(best)
        solved.append(float((ep["rewards"] > 0).any()))
    furthest = np.array(furthest)
    return {"policy": policy, "levels": len(levels), "transitions": int(sum(m.size for m in moved_x)),
            "horizontal_motion": float(np.concatenate(moved_x).mean()),
            "leftward_motion": float(np.concatenate(moved_left).mean()),
            "vertical_motion": float(np.concatenate(moved_y).mean()),
            "furthest_px_median": float(np.median(furthest)), "furthest_px_p90": float(np.percentile(furthest, 90)),
            "levels_with_a_coin": float(np.mean(solved))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", type=int, default=20)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--start-level", type=int, default=90000, help="levels no bundled world trained on")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| policy | transitions | sideways motion > 0.5 px | leftward > 0.5 px | vertical motion > 0.5 px | "
          "furthest right (px), median / p90 | levels with a coin |")
    print("|---|---|---|---|---|---|---|")
    for policy in args.policies:
        started = time.perf_counter()
        r = travel(policy, range(args.start_level, args.start_level + args.levels), args.steps, args.seed)
        print(f"| {policy} | {r['transitions']} | {r['horizontal_motion']:.1%} | {r['leftward_motion']:.1%} | "
              f"{r['vertical_motion']:.1%} | "
              f"{r['furthest_px_median']:.0f} / {r['furthest_px_p90']:.0f} | {r['levels_with_a_coin']:.0%} |"
              f"  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
