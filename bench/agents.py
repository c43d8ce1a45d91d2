"""Agents from latent actions (Genie App. E): the numbers in docs/agents.md.

    python bench/agents.py square --seeds 5            # the square world, end to end, per seed
    python bench/agents.py expert --levels 200         # the CoinRun expert and a random agent
    python bench/agents.py coinrun --seeds 5           # latent agent per N, oracle, random on CoinRun
    python bench/agents.py plot                        # success against N from the two JSON files above

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
from opengenie.data.expert import LookaheadExpert


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
    data = make_data(world, levels["train_levels"], levels["label_levels"], 100, args.difficulty)
    print(f"expert data: {len(data['demo']['actions'])} transitions to clone, {len(data['few']['actions'])} "
          f"to label from  ({time.perf_counter() - started:.0f} s)", flush=True)
    runs = []
    for s in range(args.seeds):
        r = run_coinrun(world, **levels, seed=s, data=data, difficulty=args.difficulty)
        cells = " ".join(f"N={n}: {v['rate']:.3f}" for n, v in r["latent"].items())
        print(f"seed {s}: latent {cells} | oracle {r['oracle']['rate']:.3f} | random {r['random']['rate']:.3f}"
              f"  ({r['seconds']} s)", flush=True)
        runs.append(r)
    usage = np.bincount(data["demo"]["latents"], minlength=world.num_actions).tolist()
    return {"runs": runs, "latent_usage": usage, "transitions": len(data["demo"]["actions"])}


def blind(args) -> dict:
    """Agents that ignore the frame: RIGHT or RIGHT+UP (procgen keys 7 and 8) drawn at random,
    on the held-out levels and seeds of `coinrun`: the action prior a clone has to beat."""
    from opengenie.agents.coinrun import play_levels

    levels = range(args.start_level, args.start_level + args.levels)
    out = {}
    for name, up in (("right or right+up, 1/2", 0.5), ("right 3/4, right+up 1/4", 0.25)):
        rates = [float(play_levels(lambda f, rng: rng.choice([7, 8], size=len(f), p=[1 - up, up]),
                                   levels, args.difficulty, seed).mean()) for seed in range(args.seeds)]
        print(f"{args.difficulty} blind {name}: {np.mean(rates):.3f} per seed {rates}", flush=True)
        out[name] = rates
    return {"difficulty": args.difficulty, "blind": out}


def seed_mean(runs: list[dict], key) -> tuple[float, float, float]:
    """Mean success over seeds and its bootstrap 95 % interval over seeds."""
    from opengenie.evaluation.uncertainty import bootstrap_ci

    values = [key(r)["rate"] for r in runs]
    return (float(np.mean(values)), *bootstrap_ci(values))


def plot(args) -> dict:
    """success_vs_labels.png: the latent agent's success against N on each world, oracle and random beside it."""
    from PIL import Image, ImageDraw

    from opengenie.evaluation.figures import BACKGROUND, COLOURS, INK, _Axes

    panels = [(name, json.loads((Path(args.out) / f"{name}.json").read_text())["runs"])
              for name in ("square", "coinrun") if (Path(args.out) / f"{name}.json").exists()]
    img = Image.new("RGB", (440 * len(panels), 340), BACKGROUND)
    draw, table = ImageDraw.Draw(img), {}
    for p, (name, runs) in enumerate(panels):
        ns = [int(n) for n in runs[0]["latent"]]
        ax = _Axes(draw, (440 * p + 60, 30, 440 * p + 420, 290), (-0.5, len(ns) - 0.5), (0, 1))
        ax.frame("N labelled transitions (0, 10/50, ..)", "success", f"{name}: mean of {len(runs)} seeds, 95 %",
                 xticks=1)
        for i, (label, key) in enumerate([("oracle", lambda r: r["oracle"]), ("random", lambda r: r["random"])]):
            mean, low, high = seed_mean(runs, key)
            table[f"{name}/{label}"] = [mean, low, high]
            draw.line([ax.px(-0.5, mean), ax.px(len(ns) - 0.5, mean)], fill=COLOURS[i + 1], width=2)
            draw.text(ax.px(len(ns) - 1.4, mean + 0.05), label, fill=COLOURS[i + 1])
        points = []
        for j, n in enumerate(ns):
            mean, low, high = seed_mean(runs, lambda r: r["latent"][str(n)])
            table[f"{name}/latent N={n}"] = [mean, low, high]
            draw.line([ax.px(j, low), ax.px(j, high)], fill=COLOURS[0], width=2)
            draw.text((ax.px(j, 0)[0] - 8, 296), f"N={n}", fill=INK)
            points.append(ax.px(j, mean))
        draw.line(points, fill=COLOURS[0], width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLOURS[0])
    path = Path(args.out) / "success_vs_labels.png"
    img.save(path)
    for k, (m, lo, hi) in table.items():
        print(f"{k:24s} {m:.3f} [{lo:.3f}, {hi:.3f}]")
    return {"table": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["square", "expert", "coinrun", "blind", "plot"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--levels", type=int, default=200)
    p.add_argument("--start-level", type=int, default=100_000, help="held-out levels: no world here saw them")
    p.add_argument("--train-levels", type=int, default=100, help="levels of expert play to clone from")
    p.add_argument("--world", default="worlds/coinrun-small", help="the world whose action model labels")
    p.add_argument("--out", default="out/agents")
    p.add_argument("--difficulty", default="easy", choices=["easy", "hard"],
                   help="coinrun: the levels the expert plays and the agents are scored on")
    args = p.parse_args()
    torch.set_num_threads(1)
    result = {"square": square, "expert": expert, "coinrun": coinrun, "blind": blind, "plot": plot}[args.part](args)
    suffix = "-hard" if args.part in ("coinrun", "blind") and args.difficulty == "hard" else ""
    path = Path(args.out) / f"{args.part}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": vars(args), **result}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
