"""Agents from latent actions (Genie App. E): the numbers in docs/agents.md.

    python bench/agents.py square --seeds 5            # the square world, end to end, per seed
    python bench/agents.py expert --levels 200         # the CoinRun expert and a random agent
    python bench/agents.py coinrun --seeds 5           # latent agent per N, oracle, random on CoinRun

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


def coinrun(args) -> dict:
    from opengenie import Genie
    from opengenie.agents.coinrun import make_data, run_coinrun

    world = Genie.from_pretrained(args.world).eval()
    started = time.perf_counter()
    levels = dict(train_levels=range(0, args.train_levels), label_levels=range(1000, 1040),
                  eval_levels=range(args.start_level, args.start_level + args.levels))
    data = make_data(world, levels["train_levels"], levels["label_levels"], 100, "easy")
    print(f"expert data: {len(data['demo']['actions'])} transitions to clone, {len(data['few']['actions'])} "
          f"to label from  ({time.perf_counter() - started:.0f} s)", flush=True)
    runs = []
    for s in range(args.seeds):
        r = run_coinrun(world, **levels, seed=s, data=data)
        cells = " ".join(f"N={n}: {v['rate']:.3f}" for n, v in r["latent"].items())
        print(f"seed {s}: latent {cells} | oracle {r['oracle']['rate']:.3f} | random {r['random']['rate']:.3f}"
              f"  ({r['seconds']} s)", flush=True)
        runs.append(r)
    usage = np.bincount(data["demo"]["latents"], minlength=world.num_actions).tolist()
    return {"runs": runs, "latent_usage": usage, "transitions": len(data["demo"]["actions"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["square", "expert", "coinrun"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--levels", type=int, default=200)
    p.add_argument("--start-level", type=int, default=100_000, help="held-out levels: no world here saw them")
    p.add_argument("--train-levels", type=int, default=100, help="levels of expert play to clone from")
    p.add_argument("--world", default="worlds/coinrun-small", help="the world whose action model labels")
    p.add_argument("--out", default="out/agents")
    args = p.parse_args()
    torch.set_num_threads(1)
    result = {"square": square, "expert": expert, "coinrun": coinrun}[args.part](args)
    path = Path(args.out) / f"{args.part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": vars(args), **result}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
