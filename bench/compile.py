"""Does torch.compile pay on this machine? A play step and a stage-2 training step, eager against
compiled, measured side by side.

    python bench/compile.py [--preset small] [--repeats 5] [--play-frames 20] [--train-steps 5]
                            [--threads 1] [--only play train] [--json out.json]

Each repeat times eager, then compiled, in the same process, one after the other, so that the
ratio holds on a shared machine whose absolute speed drifts. Compilation (and any recompile) is
paid before the timed part and reported on its own. Play: `Rollout.step` from a full context
with every ST block of the world compiled in place (`compile_blocks`, what
`model.init_args.compile: true` does to the trained networks); training: `DynamicsModule`'s loss,
backward, clipping and AdamW at the preset's clip length, batch 8, with its trained networks
compiled. Weights are random: the cost of a step does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from opengenie import Genie, presets
from opengenie.nn.st_transformer import compile_blocks
from opengenie.training import DynamicsModule, TokenizerModule
from train_step import make_step  # bench/, the script's own folder


def play_timer(preset: str, compiled: bool):
    """A function timing `frames` play steps → ms per step, and the seconds set-up took."""
    torch.manual_seed(0)
    world = Genie(presets.get(preset)).eval()
    if compiled:
        compile_blocks(world)
    prompt = torch.rand(1, 3, world.config.dynamics.max_frames - 1, *world.image_size) * 2 - 1
    started = time.perf_counter()
    state, _ = world.start(prompt, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):  # compile (or warm up) the first steps' shapes
        state.step(torch.tensor([int(rng.integers(world.num_actions))]))
    setup = time.perf_counter() - started

    def run(frames: int) -> float:
        times = []
        for _ in range(frames):
            t = time.perf_counter()
            state.step(torch.tensor([int(rng.integers(world.num_actions))]))
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)
    return run, setup


def train_timer(preset: str, compiled: bool, tmp: Path, batch_size: int = 8):
    """A function timing `steps` stage-2 training steps → ms per step, and the set-up seconds."""
    torch.manual_seed(0)
    path = tmp / f"{preset}-tokenizer.ckpt"
    if not path.exists():  # stage 2 needs a tokenizer checkpoint: an untrained one will do
        tokenizer = TokenizerModule(preset=preset)
        torch.save({"state_dict": tokenizer.state_dict(), "hyper_parameters": dict(tokenizer.hparams)}, path)
    module = DynamicsModule(str(path), preset=preset, compile=compiled).train()
    module.configure_model()
    frames = module.hparams.genie_config["dynamics"]["max_frames"]
    g = torch.Generator().manual_seed(0)
    batch = {"video": torch.rand(batch_size, 3, frames, 64, 64, generator=g) * 2 - 1}
    batch["tokens"] = module.tokenize(batch["video"])
    step = make_step(module, batch)
    started = time.perf_counter()
    for _ in range(2):
        step()
    setup = time.perf_counter() - started
    return (lambda steps: 1000 * statistics.median(step() for _ in range(steps))), setup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--play-frames", type=int, default=20)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", choices=["play", "train"], default=["play", "train"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"preset": args.preset, "threads": args.threads, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make, n in (("play", lambda c: play_timer(args.preset, c), args.play_frames),
                              ("train", lambda c: train_timer(args.preset, c, Path(tmp)), args.train_steps)):
            if kind not in args.only:
                continue
            # Compiled code is cached per function: without a reset the training step would reuse
            # (or, past the recompile limit, fall back from) what the play step compiled.
            torch._dynamo.reset()
            (eager, eager_setup), (compiled, compiled_setup) = make(False), make(True)
            ms = {"eager": [], "compiled": []}
            for _ in range(args.repeats):  # interleaved
                ms["eager"].append(eager(n))
                ms["compiled"].append(compiled(n))
            result[kind] = {"setup_s": {"eager": eager_setup, "compiled": compiled_setup},
                            **{f"{k}_ms": {"min": min(v), "median": statistics.median(v), "all": v}
                               for k, v in ms.items()},
                            "speedup_min": min(ms["eager"]) / min(ms["compiled"]),
                            "speedup_median": statistics.median(ms["eager"]) / statistics.median(ms["compiled"])}
            r = result[kind]
            print(f"{kind:5s} eager {r['eager_ms']['min']:.1f} / {r['eager_ms']['median']:.1f} ms, "
                  f"compiled {r['compiled_ms']['min']:.1f} / {r['compiled_ms']['median']:.1f} ms (min / median of "
                  f"{args.repeats}); compiled/eager speed-up {r['speedup_min']:.2f}x (min) "
                  f"{r['speedup_median']:.2f}x (median); compile set-up {compiled_setup:.0f} s "
                  f"against {eager_setup:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
