"""Several players of one world: stepped together as one batch, or one after another.

    python bench/players.py [--model worlds/coinrun-wander] [--players 1 2 4] [--repeats 5]
                            [--steps 10] [--threads 1] [--compile]

For each number of players N, N rollouts of the world are started from its prompt frames and
played to different frames (the ring caches at different positions, as real players are). Then,
interleaved, `--repeats` times each: `--steps` steps of all N players with
`Rollout.step_together` (one batch, eager), and the same steps one player after another (eager,
and with `--compile` also compiled). Prints ms per player-step, min and median over the repeats,
and what a player waits for one step of everyone (N × the per-player cost).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from opengenie import Genie
from opengenie.engine import Rollout, play_graphs
from opengenie.images import load_frames, to_video


def players(world: Genie, model: str, n: int) -> list[Rollout]:
    """n rollouts at different ages, from the world's prompt frames (grey without any)."""
    prompts = sorted(Path(model, "prompts").glob("*.png"))
    size = world.config.tokenizer.image_size
    out = []
    for i in range(n):
        frame = to_video(load_frames(prompts[i % len(prompts)], size)) if prompts else torch.zeros(1, 3, 1, *size)
        state, _ = world.start(frame, seed=i)
        for a in range(3 * i):
            state.step(a % world.num_actions)
        out.append(state)
    return out


def timed(fn, steps: int) -> float:
    started = time.perf_counter()
    for s in range(steps):
        fn(s)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="worlds/coinrun-wander")
    p.add_argument("--players", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also time compiled steps, one player after another")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = Genie.from_pretrained(args.model)
    graphs = None
    if args.compile:
        if not world.compile_play():
            raise SystemExit("torch.compile could not compile the play step on this machine")
        graphs = play_graphs(world.tokenizer, world.dynamics)
        world.dynamics._play_graphs = None  # on only while the compiled programme is timed
    print(f"{args.model}: {world.config.dynamics.maskgit_steps} MaskGIT steps, {args.threads} thread(s)")
    print("| players | programme | ms per player-step, min / median | a round of every player (ms, median) |")
    print("|---|---|---|---|")
    for n in args.players:
        states = players(world, args.model, n)
        programmes = {
            "together, eager": lambda s: Rollout.step_together(states, [(s + i) % world.num_actions for i in range(n)]),
            "one by one, eager": lambda s: [r.step((s + i) % world.num_actions) for i, r in enumerate(states)],
        }
        if graphs is not None:
            programmes["one by one, compiled"] = programmes["one by one, eager"]
        times: dict[str, list[float]] = {name: [] for name in programmes}
        for _ in range(args.repeats):
            for name, fn in programmes.items():
                world.dynamics._play_graphs = graphs if name.endswith("compiled") else None
                times[name].append(timed(fn, args.steps) / (args.steps * n) * 1000)
        world.dynamics._play_graphs = None
        for name, ms in times.items():
            print(f"| {n} | {name} | {min(ms):.1f} / {statistics.median(ms):.1f} | {statistics.median(ms) * n:.0f} |")


if __name__ == "__main__":
    main()
