"""How fast a world plays: frames/s of one `step()` per preset, with and without the key/value cache.

    python bench/play.py [--presets tiny coinrun] [--frames 20] [--cache both|yes|no] [--bf16]
                         [--threads N] [--device cpu] [--maskgit-steps K] [--compile] [--json out.json]
                         [--patch-sizes 8 4]

Each run starts from a prompt that already fills the context window (max_frames - 1 frames), so
every timed step sees the full history a long play session has: that is the steady state a
player feels. `--warmup` untimed steps come first (0 for very slow configurations); then
`--frames` steps are timed one by one at the preset's MaskGIT steps. Weights are random: the
cost of a step does not depend on their values. `--compile` compiles the play step first
(`Genie.compile_play`, not timed; its seconds are reported). Prints a table, then the same
numbers as JSON. `--patch-sizes` times each preset again with its tokenizer's patch (and so the
dynamics grid: 64 / patch tokens a side) replaced, e.g. the cost of a richer token.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import time

import numpy as np
import torch

from opengenie import Genie, presets


def bench_one(preset: str, use_cache: bool, frames: int, device: str, bf16: bool, warmup: int = 1,
              maskgit_steps: int | None = None, compile_play: bool = False, patch_size: int | None = None) -> dict:
    torch.manual_seed(0)
    config = presets.get(preset)
    if patch_size is not None:
        tokenizer = dataclasses.replace(config.tokenizer, patch_size=patch_size)
        config = dataclasses.replace(config, tokenizer=tokenizer,
                                     dynamics=dataclasses.replace(config.dynamics, grid=tokenizer.grid))
    if maskgit_steps is not None:
        config = dataclasses.replace(config, dynamics=dataclasses.replace(config.dynamics, maskgit_steps=maskgit_steps))
    world = Genie(config).to(device).eval()
    compile_seconds = None
    if compile_play and use_cache:
        started = time.perf_counter()
        if not world.compile_play():
            raise SystemExit("torch.compile could not compile the play step on this machine")
        compile_seconds = round(time.perf_counter() - started, 1)
    c = world.config
    h, w = world.image_size
    prompt = torch.rand(1, 3, c.dynamics.max_frames - 1, h, w, device=device) * 2 - 1  # a full context
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    rng = np.random.default_rng(0)
    times = []
    with autocast:
        state, _ = world.start(prompt, seed=0, use_cache=use_cache)
        for i in range(warmup + frames):
            action = torch.tensor([int(rng.integers(world.num_actions))], device=device)
            start = time.perf_counter()
            state.step(action)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= warmup:  # warm-up steps fill allocators and pick kernels
                times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"preset": preset, "patch_size": c.tokenizer.patch_size, "grid": list(c.dynamics.grid), "use_cache": use_cache, "maskgit_steps": c.dynamics.maskgit_steps,
            "context_frames": c.dynamics.max_frames - 1, "frames": frames, "device": device, "bf16": bf16,
            "threads": torch.get_num_threads(), "compiled": compile_seconds is not None,
            "compile_seconds": compile_seconds, "fps": round(1000 / ms.mean(), 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "coinrun"])
    parser.add_argument("--frames", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--coinrun-frames", type=int, default=None, help="timed steps for coinrun (default: --frames)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--cache", choices=["both", "yes", "no"], default="both", help="cache settings to time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="run under bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--maskgit-steps", type=int, default=None, help="MaskGIT steps per frame (default: the preset's)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the play step first (Genie.compile_play; cached runs only)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--patch-sizes", nargs="+", type=int, default=[None],
                        help="tokenizer patch sizes to time each preset at (default: the preset's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    print(f"{'preset':8s} {'patch':>5s} {'cache':5s} {'maskgit':>7s} {'context':>7s} {'frames/s':>9s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for preset in args.presets:
        frames = args.coinrun_frames if preset == "coinrun" and args.coinrun_frames else args.frames
        for patch_size, use_cache in itertools.product(
                args.patch_sizes, {"both": (True, False), "yes": (True,), "no": (False,)}[args.cache]):
            r = bench_one(preset, use_cache, frames, args.device, args.bf16, args.warmup, args.maskgit_steps,
                          args.compile, patch_size)
            rows.append(r)
            print(f"{preset:8s} {r['patch_size']:5d} {'yes' if use_cache else 'no':5s} {r['maskgit_steps']:7d} {r['context_frames']:7d} "
                  f"{r['fps']:9.3g} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f}", flush=True)
    print(json.dumps(rows, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
