"""What action guidance costs a play step: ms per step of one world at guidance 0 and at W,
eager and compiled, interleaved, one thread.

    python bench/guidance_speed.py [--model worlds/coinrun-wander] [--guidance 3] [--repeats 5]
                                   [--steps 20] [--against mean,still] [--no-compile]

A guided draw runs the dynamics model under every latent action at once (`DynamicsConfig.
action_guidance`), so a step's dynamics passes carry num_actions rows instead of one; against
one action (`DynamicsConfig.guidance_against`, e.g. the world's "still"), two. Each
repeat times `--steps` steps of a fresh rollout per setting, the settings alternating so that
a busy machine slows them alike; printed are the min and median over repeats and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from opengenie import Genie
from opengenie.images import load_frames, to_video


def ms_per_step(world: Genie, video: torch.Tensor, steps: int, seed: int) -> float:
    state, _ = world.start(video, seed=seed)
    state.step(0)  # untimed: the first step may compile
    started = time.perf_counter()
    for i in range(steps):
        state.step(i % world.num_actions)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="worlds/coinrun-wander")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--against", default="mean,still",
                   help="what guidance contrasts with, one setting each, comma-separated: 'mean' or an action id or label")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    worlds = {}
    for mode in ("eager", "compiled") if args.compile else ("eager",):
        for w, against in [(0.0, "mean")] + [(args.guidance, a) for a in args.against.split(",")]:
            world = Genie.from_pretrained(args.model).eval().set_sampling(action_guidance=w, guidance_against=against)
            if mode == "compiled" and not world.compile_play():
                raise SystemExit("torch.compile could not compile the play step here; run with --no-compile")
            worlds[(mode, w, against)] = world
    prompts = sorted(Path(args.model, "prompts").glob("*.png"))
    if not prompts:
        raise SystemExit(f"{args.model} has no prompts/*.png to start from (write a gallery there with "
                         "`opengenie gallery --data EPISODES --out WORLD/prompts`)")
    video = to_video(load_frames(str(prompts[0]), next(iter(worlds.values())).image_size))
    times = {key: [] for key in worlds}
    for rep in range(args.repeats):
        for key, world in worlds.items():
            times[key].append(ms_per_step(world, video, args.steps, rep))
    print(f"{args.model}, {args.steps} steps x {args.repeats} repeats, one thread, interleaved:")
    print("| play step | guidance | against | ms min | ms median | frames/s (median) | cost (median) |")
    print("|---|---|---|---|---|---|---|")
    for (mode, w, against), values in times.items():
        base = statistics.median(times[(mode, 0.0, "mean")])
        med = statistics.median(values)
        shown = against if w else "-"
        print(f"| {mode} | {w:g} | {shown} | {min(values):.1f} | {med:.1f} | {1000 / med:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
