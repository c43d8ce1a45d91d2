"""The starting frames a world ships with, chosen by the real game, not by the world.

A prompt gallery (a world's `prompts/` folder, offered by the play page) is only a fair place to
start playing if every arrow has something to do there: from a frame where the agent stands
against a wall, the real game's LEFT does not move the camera either, and a world that walks
left from it is wrong. So the gallery is drawn from held-out CoinRun episodes by replaying the
real game to each candidate state and holding RIGHT, LEFT, UP and no key from it
(`coinrun_reference`). A state is kept only when each of RIGHT, LEFT and UP moves the camera
at least `min_px` its way beyond where no key takes it (an agent in mid-air drifts with no key
pressed), and no held key ends the episode (a coin reached or a death restarts the level: the
frames after it are a new episode, not motion). The real game's motion from every kept state is
written beside the frames (`real.json`), so that a world can be held against the game from the
very frames a player starts from:

    opengenie gallery --data data/gallery --out worlds/coinrun-wander/prompts --frame-skip 4

One state per level (the first candidate that qualifies), levels in file order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from opengenie.evaluation.motion import max_shift_for
from opengenie.evaluation.playability import (COINRUN_KEYS, HOLD_STEPS, coinrun_reference, episode_state, held_motion,
                                              hold_actions)
from opengenie.evaluation.uncertainty import bootstrap_ci

REFERENCE_FILE = "real.json"
WAYS = {"RIGHT": ("dx", 1), "LEFT": ("dx", -1), "UP": ("dy", -1)}  # key → (axis, sign of its motion)
ARROWS = {"ArrowRight": "RIGHT", "ArrowLeft": "LEFT", "ArrowUp": "UP"}


def real_motion(states: list[dict], steps: int, frame_skip: int) -> list[dict]:
    """Per state: {"motion": {key: {"dx", "dy"}}} of the real game holding each key `steps`
    world steps, "ended": whether holding some key ended the episode, "replayed": whether the
    replayed state is the recorded frame."""
    real, ended = coinrun_reference(states, steps, frame_skip=frame_skip)  # (K, N, 1 + k, 64, 64, 3), (K, N)
    held = held_motion(real, max_shift_for(frame_skip, 64))
    dx, dy = held.dx.sum(-1), held.dy.sum(-1)  # (K, N)
    return [{"motion": {key: {"dx": round(float(dx[k, n]), 2), "dy": round(float(dy[k, n]), 2)}
                        for k, key in enumerate(COINRUN_KEYS)},
             "ended": bool(ended[:, n].any()),
             "replayed": bool((real[0, n, 0].numpy() == s["frame"]).all())} for n, s in enumerate(states)]


def qualifies(real: dict, min_px: float) -> bool:
    """RIGHT, LEFT and UP each move the camera ≥ `min_px` their way beyond no key, and no key ends the episode."""
    motion, still = real["motion"], real["motion"]["none"]
    return (real["replayed"] and not real["ended"]
            and all(sign * (motion[key][axis] - still[axis]) >= min_px for key, (axis, sign) in WAYS.items()))


def choose_gallery(data: str | Path, count: int = 6, steps: int = HOLD_STEPS, frame_skip: int = 4,
                   every: int = 40, min_px: float = 6.0, progress: bool = True) -> tuple[list[dict], dict]:
    """Up to `count` states of the CoinRun episodes in `data` that `qualifies`, holding keys
    `steps` world steps of `frame_skip` game frames. Candidates: every `every`-th frame of each
    episode (from frame `every` on), one state kept per level.

    Returns ([{"name", "level_seed", "start", "frame" (64, 64, 3) uint8, "motion"}], the data's settings).
    """
    from tqdm.auto import tqdm

    from opengenie.data import episode_paths, load_episode, read_manifest

    data = Path(data)
    manifest = read_manifest(data)
    if manifest is None or manifest.get("source") != "coinrun":
        raise ValueError(f"{data} is not a CoinRun dataset (its manifest.json must say source: coinrun); "
                         f"make one with `opengenie data coinrun --out {data} ...`")
    if count < 1 or steps < 1 or frame_skip < 1 or every < 1:
        raise ValueError(f"count, steps, frame_skip and every must be at least 1, got {count}, {steps}, "
                         f"{frame_skip} and {every}")
    settings, chosen = manifest["settings"], []
    bar = tqdm(sorted(episode_paths(data)), desc="gallery", unit="level", disable=not progress)
    for path in bar:
        ep = load_episode(path)
        seed = int(ep["level_seed"])
        states = [episode_state(ep, t, settings) for t in range(every, len(ep["frames"]), every)]
        for state, real in zip(states, real_motion(states, steps, frame_skip)):
            if qualifies(real, min_px):
                chosen.append({"name": f"level_{seed:06d}_t{state['start']:03d}", "level_seed": seed,
                               "start": state["start"], "frame": state["frame"], "motion": real["motion"]})
                break
        bar.set_postfix(kept=len(chosen))
        if len(chosen) == count:
            break
    return chosen, settings


def write_gallery(data: str | Path, out: str | Path, count: int = 6, steps: int = HOLD_STEPS,
                  frame_skip: int = 4, every: int = 40, min_px: float = 6.0, progress: bool = True) -> dict:
    """`choose_gallery`, written as `out`/NAME.png plus `out`/real.json; returns what real.json holds.
    `out` must hold no other PNG frames (the play page would offer them as well)."""
    from PIL import Image

    out = Path(out)
    stale = sorted(p.name for p in out.glob("*.png")) if out.is_dir() else []
    if stale:
        raise ValueError(f"{out} already holds {len(stale)} PNG frames ({stale[0]}, ...); write a gallery "
                         "into an empty folder, or remove them first")
    chosen, settings = choose_gallery(data, count, steps, frame_skip, every, min_px, progress)
    if not chosen:
        raise ValueError(f"no state in {data} lets RIGHT, LEFT and UP each move the camera {min_px} px; "
                         "record more levels or lower --min-px")
    out.mkdir(parents=True, exist_ok=True)
    for c in chosen:
        Image.fromarray(c["frame"]).save(out / f"{c['name']}.png")
    policy = settings.get("policy")
    reference = {"steps": steps, "frame_skip": frame_skip, "min_px": min_px,
                 "data": {"difficulty": settings["difficulty"], "seed": settings["seed"],
                          "policy": policy.get("policy") if isinstance(policy, dict) else policy},
                 "prompts": {c["name"]: {"level_seed": c["level_seed"], "start": c["start"], "real": c["motion"]}
                             for c in chosen}}
    (out / REFERENCE_FILE).write_text(json.dumps(reference, indent=2) + "\n")
    return reference


def read_reference(folder: str | Path) -> dict | None:
    """The real game's motion stored beside a gallery (`real.json`), or None where there is none."""
    path = Path(folder) / REFERENCE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def gallery_frames(folder: str | Path, reference: dict, size: tuple[int, int]) -> torch.Tensor:
    """The frames `reference` names, from `folder`, at `size`: (N, C, 1, H, W) in [-1, 1]."""
    from opengenie.images import load_frames

    paths = [Path(folder) / f"{name}.png" for name in reference["prompts"]]
    missing = [p.stem for p in paths if not p.exists()]
    if missing:
        raise ValueError(f"{folder}/{REFERENCE_FILE} names frames that are not there: {', '.join(missing)}")
    frames = torch.from_numpy(load_frames(paths, size))  # (N, H, W, 3) uint8
    return frames.permute(0, 3, 1, 2)[:, :, None].float() / 127.5 - 1


@torch.no_grad()
def against_the_game(world, folder: str | Path, draws: int = 3, seed: int = 0, progress: bool = False) -> dict[str, dict]:
    """Each arrow's action held from the gallery in `folder` (each frame `draws` times), beside
    the real game's key from the same states: {arrow: {"action", "world", "real", "world_ci95",
    "rollouts"}}. "world" and "real" are the mean camera motion along the arrow over the hold
    (px; dx for ← →, dy for ↑), "world_ci95" the bootstrap interval of the world's mean over its
    `rollouts` (MaskGIT samples: one rollout from a frame can jump where the next does not).
    `progress`: a bar over the world's rollouts."""
    reference = read_reference(folder)
    if reference is None:
        raise ValueError(f"{folder} has no {REFERENCE_FILE}; write the gallery with `opengenie gallery`")
    if reference["frame_skip"] != world.config.frame_skip:
        raise ValueError(f"the gallery in {folder} was measured at frame skip {reference['frame_skip']}, "
                         f"the world steps {world.config.frame_skip} game frames")
    arrows = [arrow for arrow in ARROWS if arrow in world.config.arrow_keys]
    if not arrows:
        raise ValueError("the world maps no arrow key to an action; measure its labels with `opengenie label`")
    actions = [world.config.arrow_keys[arrow] for arrow in arrows]
    prompts = gallery_frames(folder, reference, world.image_size).repeat(draws, 1, 1, 1, 1)  # (draws·N, C, 1, H, W)
    video = hold_actions(world, prompts, reference["steps"], seed, actions=actions,
                         desc="held arrows" if progress else None)  # (arrows, draws·N, ...)
    held = held_motion(video, max_shift_for(world.config.frame_skip, world.image_size[0]))
    moved = {"dx": held.dx.sum(-1), "dy": held.dy.sum(-1)}  # (arrows, draws·N) displacement over the hold
    out = {}
    for i, (arrow, action) in enumerate(zip(arrows, actions)):
        key = ARROWS[arrow]
        axis, _ = WAYS[key]
        real = float(np.mean([p["real"][key][axis] for p in reference["prompts"].values()]))
        out[arrow] = {"action": action, "world": float(moved[axis][i].mean()), "real": real,
                      "world_ci95": list(bootstrap_ci(moved[axis][i])), "rollouts": int(moved[axis].shape[1])}
    return out
