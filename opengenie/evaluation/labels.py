"""A world that knows what its actions do: each latent action held from many held-out prompts,
its mean camera motion named ("walk right", "jump", "still", ...) and stored in the world's
config, with the arrow keys mapped to the actions that move the camera furthest each way.

    opengenie label --model worlds/coinrun-small --data data/eval-explore --split all

The labels are measurements, not promises: they come from the camera motion of rollouts
(`playability.py`), so a world whose actions do little gets "still" labels.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from opengenie.evaluation.playability import HOLD_STEPS, MOVE_PX, held_rows
from opengenie.genie import CONFIG_FILE, Genie


def arrow_keys(rows: list[dict]) -> dict[str, int]:
    """Arrow → action: right/left the largest ±dx, up the largest climb, down the stillest action.
    An arrow whose best action moves less than 2 px that way over the hold is left unmapped."""
    keys = {}
    right, left = max(rows, key=lambda r: r["dx_total"]), min(rows, key=lambda r: r["dx_total"])
    up = min(rows, key=lambda r: r["dy_total"])
    if right["dx_total"] > MOVE_PX:
        keys["ArrowRight"] = right["action"]
    if left["dx_total"] < -MOVE_PX:
        keys["ArrowLeft"] = left["action"]
    if up["dy_total"] < -MOVE_PX:
        keys["ArrowUp"] = up["action"]
    still = min(rows, key=lambda r: abs(r["dx_total"]) + abs(r["dy_total"]))
    if still["action"] not in keys.values():
        keys["ArrowDown"] = still["action"]
    return keys


def distinct(labels: list[str]) -> list[str]:
    """Number repeated labels ("still", "still" → "still 1", "still 2") so every button reads differently."""
    out = []
    for i, name in enumerate(labels):
        if labels.count(name) > 1:
            name = f"{name} {labels[:i + 1].count(name)}"
        out.append(name)
    return out


@torch.no_grad()
def measure_labels(world: Genie, prompts: torch.Tensor, steps: int = HOLD_STEPS, seed: int = 0,
                   batch_size: int = 32, progress: bool = False) -> tuple[tuple[str, ...], dict[str, int], list[dict]]:
    """Prompts (N, C, 1, H, W) in [-1, 1] → (labels, arrow keys, playability rows per action)."""
    _, rows = held_rows(world, prompts, steps, seed, batch_size, desc="label" if progress else None)
    return tuple(distinct([r["label"] for r in rows])), arrow_keys(rows), rows


def prompt_frames(data: str | Path, split: str | None, count: int, seed: int = 0) -> torch.Tensor:
    """`count` frames spread over the episodes of a split: (count, C, 1, H, W) in [-1, 1]."""
    from opengenie.data import EpisodeClipDataset

    ds = EpisodeClipDataset(data, seq_len=1, split=split, seed=seed, with_actions=False)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:count]
    return torch.stack([ds[int(i)]["video"] for i in order])


def label_world(model: str | Path, data: str | Path, split: str | None = "test", prompts: int = 96,
                steps: int = HOLD_STEPS, seed: int = 0, progress: bool = True) -> dict:
    """Measure the labels of the world saved in `model` and write them into its config.json.
    `prompts` frames each action is held from: at 32 the arrow key chosen between two similar
    actions changed with the frames drawn; 96 held it.

    Returns {"action_labels", "arrow_keys", "actions": rows}."""
    model = Path(model)
    if prompts < 1 or steps < 1:
        raise ValueError(f"--prompts and --hold-steps must be at least 1, got {prompts} and {steps}")
    world = Genie.from_pretrained(model)
    video = prompt_frames(data, split, prompts, seed)
    if tuple(video.shape[-2:]) != world.image_size:
        raise ValueError(f"the episodes in {data} have {tuple(video.shape[-2:])} frames but the world expects "
                         f"{world.image_size}")
    labels, keys, rows = measure_labels(world, video, steps, seed, progress=progress)
    config = replace(world.config, action_labels=labels, arrow_keys=keys)
    (model / CONFIG_FILE).write_text(config.to_json())
    result = {"action_labels": list(labels), "arrow_keys": keys, "actions": rows, "prompts": len(video),
              "steps": steps, "data": str(data), "split": split or "all"}
    from opengenie.card import write_card

    write_card(model, measured=result)  # a generated world card follows the new labels; a hand-written one stays
    return result
