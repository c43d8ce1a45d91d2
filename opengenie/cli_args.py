"""Argument types and checks shared by the `opengenie` sub-commands (`cli.py`, `cli_world.py`)."""

from __future__ import annotations

import argparse
import math
import re

from opengenie.config_checks import MAX_GUIDANCE, MAX_STEPS, MAX_TEMPERATURE

MAX_ROLLOUT = 10_000  # actions of one `generate` rollout: its frames are held in memory to write the video
INT_TEXT = re.compile(r"[+-]?\d{1,18}")  # what a count or an id looks like; longer runs of digits are typos


def bounded(kind: type, low: float, high: float | None = None):
    """An argparse type: finite `kind` values in [low, high], with a message naming the bounds."""
    def parse(text: str):
        if kind is int and not INT_TEXT.fullmatch(text.strip()):
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


def origin(text: str) -> str:
    """An argparse type: a web origin, scheme://host[:port] without a path."""
    if not re.fullmatch(r"https?://[^/\s]+", text.strip().rstrip("/")):
        raise argparse.ArgumentTypeError(f"expected an origin such as https://example.org, got {text!r}")
    return text


KEY_NAMES = {"left": "ArrowLeft", "right": "ArrowRight", "up": "ArrowUp", "down": "ArrowDown"}


def key_presses(text: str) -> list[str]:
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


def action_ids(text: str) -> list[int]:
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


POSITIVE = bounded(int, 1)
NONNEGATIVE = bounded(int, 0)
THREADS = bounded(int, 1, 1024)
TEMPERATURE = bounded(float, 0.0, MAX_TEMPERATURE)
GUIDANCE = bounded(float, 0.0, MAX_GUIDANCE)
GUIDANCE_HELP = ("action guidance weight w: what sets the pressed action apart from the others counts 1 + w times "
                 "in each draw (0: plain; default: the model's; a draw then costs a pass per latent action, "
                 "or two with --guidance-against ACTION)")
GUIDANCE_AGAINST_HELP = ("what action guidance sets the pressed action apart from: 'mean', the mean over every latent "
                         "action; 'none', the world told no action (worlds trained with action dropout); or one "
                         "action, by id or by the world's label (default: the model's)")
STEPS = bounded(int, 1, MAX_STEPS)
SEED = bounded(int, 0, 2**32 - 1)


def add_guidance(p: argparse.ArgumentParser, help: str = GUIDANCE_HELP) -> None:
    """--action-guidance and --guidance-against (`guidance_of` reads them)."""
    p.add_argument("--action-guidance", type=GUIDANCE, default=None, help=help)
    p.add_argument("--guidance-against", default=None, metavar="ACTION", help=GUIDANCE_AGAINST_HELP)


def guidance_of(args: argparse.Namespace) -> dict:
    """The `Genie.set_sampling` keywords of `add_guidance`'s options (None: the world's own)."""
    return {"action_guidance": args.action_guidance, "guidance_against": args.guidance_against}


def has_episodes(data: str) -> None:
    """Refuse an episode folder that is missing or holds no episodes, before a model is loaded."""
    from opengenie.data import episode_paths

    if not episode_paths(data):
        raise ValueError(f"no episodes in {data}; make some with `opengenie data coinrun --out {data} ...` "
                         "or `opengenie data videos`")
