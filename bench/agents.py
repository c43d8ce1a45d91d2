"""Agents from latent actions (Genie App. E): the numbers in docs/agents.md.

    python bench/agents.py square --seeds 5            # the square world, end to end, per seed
    python bench/agents.py expert --levels 200         # the CoinRun expert and a random agent

Every success rate comes with its Wilson 95 % interval over episodes; results go to
out/agents/<part>.json as well as to the terminal.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from opengenie.agents.evaluate import coinrun_episode, rate, run_square
from opengenie.agents.expert import LookaheadExpert


def square(args) -> dict:
    runs = [run_square(seed=s, labels=(0, 10, 50, 200), eval_episodes=500) for s in range(args.seeds)]
    for s, r in enumerate(runs):
        cells = " ".join(f"N={n}: {v['rate']:.3f}" for n, v in r["latent"].items())
        print(f"seed {s}: latent {cells} | oracle {r['oracle']['rate']:.3f} | random {r['random']['rate']:.3f}"
              f" | expert {r['expert']['rate']:.3f}  ({r['seconds']} s)", flush=True)
    return {"runs": runs}


def expert(args) -> dict:
    out = {}
    for difficulty in ("easy", "hard"):
        levels = range(args.start_level, args.start_level + args.levels)
        for name in ("expert", "random"):
            started = time.perf_counter()
            rng = np.random.default_rng(0)
            agent = (lambda env: LookaheadExpert(env).act) if name == "expert" else \
                (lambda env: (lambda frame: int(rng.integers(15))))
            episodes = [coinrun_episode(agent, level, difficulty) for level in levels]
            r = rate([e["success"] for e in episodes])
            r.update(steps_mean=float(np.mean([e["steps"] for e in episodes])),
                     seconds=round(time.perf_counter() - started, 1))
            out[f"{difficulty}/{name}"] = r
            print(f"{difficulty:4s} {name:6s} success {r['rate']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
                  f"of {r['n']} levels, {r['steps_mean']:.0f} steps per episode  ({r['seconds']} s)", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["square", "expert"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--levels", type=int, default=200)
    p.add_argument("--start-level", type=int, default=100_000, help="held-out levels: no world here saw them")
    p.add_argument("--out", default="out/agents")
    args = p.parse_args()
    torch.set_num_threads(1)
    result = {"square": square, "expert": expert}[args.part](args)
    path = Path(args.out) / f"{args.part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": vars(args), **result}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
