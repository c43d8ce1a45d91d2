"""Which action conditioning should the dynamics model use? A measurement on the synthetic world.

A square moves by one of 5 known moves per frame; its exact state is an 8×8 token grid. Tiny
dynamics models with 'additive' and 'token' action conditioning are trained for the same steps
with the TRUE moves, then asked to predict the next frame (fully masked) given the right move
and given a wrong one. The controllability gap — accuracy on the cells that change, right move
minus wrong move — says how much each model listens to its action.

    python bench/action_conditioning.py [--steps 300] [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from opengenie import DynamicsModel, presets
from opengenie.data.synthetic import follows_actions, moving_square


def measure(conditioning: str, steps: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    cfg = replace(presets.tiny().dynamics, vocab_size=2, num_actions=5, action_conditioning=conditioning)
    model = DynamicsModel(cfg)
    _, moves, tokens = moving_square(1024, 4, num_moves=5, seed=seed)
    _, val_moves, val_tokens = moving_square(256, 2, num_moves=5, seed=seed + 100)
    start = time.perf_counter()
    right, wrong = follows_actions(model, tokens, moves, val_tokens, val_moves, steps=steps)
    return {"right": right, "wrong": wrong, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    for conditioning in ("additive", "token"):
        runs = [measure(conditioning, args.steps, seed) for seed in range(args.seeds)]
        rows[conditioning] = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    print(f"{'conditioning':<12} {'acc (right move)':>17} {'acc (wrong move)':>17} {'gap':>7} {'s/run':>6}")
    for name, r in rows.items():
        print(f"{name:<12} {r['right']:>17.3f} {r['wrong']:>17.3f} {r['right'] - r['wrong']:>7.3f} {r['seconds']:>6.0f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
